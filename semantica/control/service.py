"""``semctl service``: run the supervisor as a systemd user service or a launchd agent.

``install`` fills in the template (``systemd/semantica.service`` or
``launchd/dev.semantica.semanticad.plist``, shipped inside the package) with
this installation's ``semanticad`` and the ``SEMANTICA_*`` settings of the user
running it, writes it to the user's unit or agent directory and starts it.
With ``--web`` every command does the same for a second service, the web view
(``semctl web --addr ADDR``, templates ``systemd/semantica-web.service`` and
``launchd/dev.semantica.web.plist``; what is particular to it is in
``service_web.py``): one :class:`~.service_files.Service` record names each, and
one code path renders (``service_files.py``), asks the service manager
(``service_manager.py``), installs, removes and reports both.
``--dry-run`` prints the file on stdout and what would be done on stderr (so
``semctl service install --dry-run > semantica.service`` saves the file), and
changes nothing. ``uninstall`` stops and removes it; ``status`` says whether it
is installed and what the service manager says.

Exit status: 2 when nothing was changed because of a bad flag or setting, a
missing ``semanticad``, ``systemctl``/``launchctl`` or user service manager;
1 when a step of the install itself failed (the message names it).

Only the standard library, typer and small semantica modules (the other
``service_*`` modules, ``web_addr``, ``errors``; nothing of the web view itself)
are imported at the top: ``semctl`` loads this module on every run to register
the sub-command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from semantica.control import service_web
from semantica.control.service_files import (
    LAUNCHD,
    SUPERVISOR,
    SYSTEMD,
    WEB,
    Service,
    installed_command,
    logs_dir,
    render,
    target_path,
    template,
    this_program,
    write_file,
)
from semantica.control.service_manager import (
    domain,
    join,
    manager_problem,
    manager_state,
    one_line,
    run,
)
from semantica.control.web_addr import DEFAULT_ADDR
from semantica.errors import BadInput, SemanticaError

# A stop must outlast the drain and a stopped command's grace; this is the margin.
STOP_MARGIN_S = 10

service_app = typer.Typer(
    name="service",
    help="Run the supervisor (--web: the web view) as a service: a systemd user unit, or a "
    "launchd agent on macOS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
]
SystemdOpt = Annotated[
    bool, typer.Option("--systemd", help="A systemd user unit (the default except on macOS).")
]
LaunchdOpt = Annotated[
    bool, typer.Option("--launchd", help="A launchd agent (the default on macOS).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
WebOpt = Annotated[
    bool,
    typer.Option("--web", help="The web view's service (semctl web), not the supervisor's."),
]
AddrOpt = Annotated[
    str | None,
    typer.Option(
        "--addr",
        help=f"With --web: where the web view listens, HOST:PORT (default {DEFAULT_ADDR}).",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    print(f"semctl: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _bad(message: str) -> NoReturn:
    from semantica.errors import EXIT_BAD_INPUT

    _fail(message, EXIT_BAD_INPUT)


def _broken(message: str) -> NoReturn:
    """A failure past the checks: 1, the status the README gives "it did not work"."""
    from semantica.errors import EXIT_JOB_FAILED

    _fail(message, EXIT_JOB_FAILED)


# -- where things are ---------------------------------------------------------


def _platform(systemd: bool, launchd: bool) -> str:
    if systemd and launchd:
        _bad("give --systemd or --launchd, not both")
    if systemd or launchd:
        return SYSTEMD if systemd else LAUNCHD
    return LAUNCHD if sys.platform == "darwin" else SYSTEMD


def _program(service: Service) -> Path:
    path = this_program(service)
    if not (path.is_file() and os.access(path, os.X_OK)):
        _bad(
            f"no {service.program} beside this Python ({path}): "
            "install semantica in this environment"
        )
    return path


def _web_addr(addr: str | None) -> str:
    """The web view's --addr, checked as semctl web checks it (exit 2 if it would refuse it)."""
    try:
        return service_web.checked_addr(DEFAULT_ADDR if addr is None else addr)
    except BadInput as exc:
        _bad(exc.message)


def _service_env(ctx: typer.Context) -> dict[str, str]:
    """The SEMANTICA_* settings to hand the service: the environment's, semctl's flags on top."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SEMANTICA_")}
    root = ctx.find_root().params
    for flag in ("home", "socket"):
        if root.get(flag):
            env[f"SEMANTICA_{flag.upper()}"] = str(root[flag])
    # semctl finds the state under $XDG_STATE_HOME; the service may not have it set.
    if not env.get("SEMANTICA_HOME") and os.environ.get("XDG_STATE_HOME"):
        env["SEMANTICA_HOME"] = str(Path(os.environ["XDG_STATE_HOME"]) / "semantica")
    # The service does not start in this directory: relative paths would move.
    for name in ("SEMANTICA_HOME", "SEMANTICA_SOCKET"):
        if env.get(name):
            env[name] = os.path.abspath(os.path.expanduser(env[name]))
    for name, value in env.items():
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            _bad(f"{name} holds a control character, which a service file cannot carry")
    return dict(sorted(env.items()))


def _stop_timeout(env: dict[str, str]) -> int | None:
    """Seconds a stop may take: the drain, a stopped command's grace, a margin.

    None when the drain may take forever (``SEMANTICA_DRAIN_TIMEOUT=inf``).
    Validates the settings on the way: a value the supervisor would refuse is
    refused here, before a service that cannot start is installed.
    """
    import math

    from semantica.config import Settings
    from semantica.errors import ConfigError

    try:
        settings = Settings.from_env({"HOME": str(Path.home()), **env})
    except ConfigError as exc:
        _bad(f"{exc.message} (the service would not start)")
    total = settings.drain_timeout + settings.cancel_grace + STOP_MARGIN_S
    return math.ceil(total) if math.isfinite(total) else None


# -- what install says and does ---------------------------------------------


def _step(command: list[str], after: str) -> None:
    code, out, err = run(command)
    if code != 0:
        reason = one_line(err or out) or f"exit status {code}"
        _broken(f"{join(command)} failed: {reason} ({after})")
    print(f"ran: {join(command)}")


def _how_to_look(platform: str, service: Service = SUPERVISOR) -> str:
    if platform == SYSTEMD:
        return f"its log: journalctl --user -u {service.journal}"
    return f"its log: {logs_dir(Path.home()) / service.log}"


def _web_login(platform: str, addr: str, env: dict[str, str]) -> list[str]:
    """How to log in to the web view's service: its log holds the one-time URL."""
    from semantica.config import locate

    token = locate(env={"HOME": str(Path.home()), **env}).token
    if platform == SYSTEMD:
        find = f"journalctl --user -u {WEB.journal} -o cat | grep 'web view:' | tail -n 1"
        restart = join(["systemctl", "--user", "restart", WEB.unit])
    else:
        log = str(logs_dir(Path.home()) / WEB.log)
        find = f"{join(['grep', 'web view:', log])} | tail -n 1"
        restart = join(["launchctl", "kickstart", "-k", f"{domain()}/{WEB.label}"])
    return service_web.login_help(addr, token, find, restart)


# -- the commands -------------------------------------------------------------


@service_app.command()
def install(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
    web: WebOpt = False,
    addr: AddrOpt = None,
) -> None:
    """Install the supervisor (--web: the web view) as a user service and start it.

    Writes a systemd user unit (~/.config/systemd/user/semantica.service) or a
    launchd agent (~/Library/LaunchAgents/dev.semantica.semanticad.plist) that
    runs this installation's semanticad with the SEMANTICA_* settings set now,
    then enables and starts it. Run again after an upgrade: it restarts the service.
    With --web: semantica-web.service (dev.semantica.web.plist), running this
    installation's `semctl web --addr ADDR` with the same settings; the one-time
    login URL it prints goes to its log.
    """
    platform = _platform(systemd, launchd)
    if addr is not None and not web:
        _bad("--addr goes with --web (where the web view listens)")
    service = WEB if web else SUPERVISOR
    program = _program(service)
    env = _service_env(ctx)
    if web:
        address = _web_addr(addr)
        markers = {"@SEMCTL@": str(program), "@ADDR@": address}
        stop_timeout: int | None = service_web.WEB_STOP_S
    else:
        markers = {"@SEMANTICAD@": str(program)}
        stop_timeout = _stop_timeout(env)
    home = Path.home()
    try:
        text = render(platform, template(platform, service), markers, home, env, stop_timeout)
    except SemanticaError as exc:  # the installation lacks its templates: not the input
        _broken(exc.message)
    target = target_path(platform, service)

    problem = manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was written")
    state = manager_state(platform, problem, service)[
        0
    ]  # None: cannot tell (a dry run without the tool)
    if platform == SYSTEMD:
        commands = [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", service.unit],
        ]
        if state not in (None, "inactive", "failed"):  # enable --now leaves it running as is
            commands.append(["systemctl", "--user", "restart", service.unit])
    else:
        commands = [["launchctl", "bootstrap", domain(), str(target)]]
        if state not in (None, "not loaded"):  # bootstrap refuses a loaded agent
            commands.insert(0, ["launchctl", "bootout", f"{domain()}/{service.label}"])
    alarm = service_web.warning(address) if web else None
    if alarm is not None:  # before the file, so it is not missed in a dry run either
        print(alarm, end="", file=sys.stderr, flush=True)

    if dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()  # the file, then (on stderr) what would be done with it
        plan = [join(c) for c in commands]
        if platform == LAUNCHD:
            plan.insert(0, join(["mkdir", "-p", str(logs_dir(home))]))
        print(
            f"semctl: dry run, nothing changed; install would write the {platform} file above "
            f"to {target} and run:",
            *(f"  {line}" for line in plan),
            sep="\n",
            file=sys.stderr,
        )
        return

    try:
        if platform == LAUNCHD:
            logs_dir(home).mkdir(parents=True, exist_ok=True)
        write_file(target, text)
    except OSError as exc:
        _broken(f"cannot write {target}: {exc.strerror or exc}")
    print(f"wrote {target}")
    for command in commands:
        _step(command, f"the file is at {target}; {_how_to_look(platform, service)}")
    state, why = manager_state(platform, None, service)
    name = service.unit if platform == SYSTEMD else service.label
    if not web:
        print(f"{name}: {state or why}; `semctl status` talks to it, {_how_to_look(platform)}")
        return
    print(f"{name}: {state or why}; {_how_to_look(platform, WEB)}")
    print(*_web_login(platform, address, env), sep="\n")
    if not target_path(platform, SUPERVISOR).exists():
        print(
            "note: the supervisor's service is not installed (semctl service install): "
            "the web view says so until a supervisor runs"
        )


@service_app.command()
def uninstall(
    dry_run: DryRunOpt = False,
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
    web: WebOpt = False,
) -> None:
    """Stop the user service (--web: the web view's), disable it and remove its file."""
    platform = _platform(systemd, launchd)
    service = WEB if web else SUPERVISOR
    target = target_path(platform, service)
    if not target.exists():
        print(f"not installed (no {target}); nothing to do")
        return
    problem = manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was removed")
    if platform == SYSTEMD:
        before = [["systemctl", "--user", "disable", "--now", service.unit]]
        after = [["systemctl", "--user", "daemon-reload"]]
    else:
        # Without launchctl (a dry run) assume it is loaded: show the whole plan.
        loaded = manager_state(platform, problem, service)[0] != "not loaded"
        before = [["launchctl", "bootout", f"{domain()}/{service.label}"]] if loaded else []
        after = []
    if dry_run:
        plan = [*before, ["rm", str(target)], *after]
        print("dry run, nothing changed; uninstall would run:")
        for command in plan:
            print(f"  {join(command)}")
        return
    for command in before:
        _step(command, f"nothing was removed; the file is at {target}")
    try:
        target.unlink()
    except OSError as exc:
        _broken(f"cannot remove {target}: {exc.strerror or exc}")
    print(f"removed {target}")
    for command in after:
        _step(command, "the service is stopped and its file removed")
    if not web and target_path(platform, WEB).exists():
        print("the web view's service stays installed: semctl service uninstall --web removes it")


@service_app.command()
def status(
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
    json_out: JsonOpt = False,
    web: WebOpt = False,
) -> None:
    """Whether the user service (--web: the web view's) is installed, what it runs, and
    what its manager says."""
    platform = _platform(systemd, launchd)
    service = WEB if web else SUPERVISOR
    target = target_path(platform, service)
    installed = target.is_file()
    arguments = installed_command(platform, target) if installed else None
    runs = arguments[0] if arguments else None
    ours = str(this_program(service))
    state, why = manager_state(platform, manager_problem(platform), service)
    report: dict[str, Any] = {
        "platform": platform,
        "file": str(target),
        "installed": installed,
        service.program: runs,  # "semanticad", or (--web) "semctl"
        "this_installation": None if runs is None else runs == ours,
        "state": state,
        "error": why,
    }
    address = service_web.installed_addr(arguments or [])
    if web:
        report["addr"] = address
    if json_out:
        import json

        print(json.dumps(report))
        return
    kind = "systemd user unit" if platform == SYSTEMD else "launchd agent"
    command = join(arguments) if web and arguments else runs
    if not installed:
        how = "semctl service install" + (" --web" if web else "")
        print(f"{kind} {target}: not installed ({how})")
    elif runs is not None and runs != ours:
        print(f"{kind} {target}: installed, runs {command} (this installation's is {ours})")
    else:
        print(f"{kind} {target}: installed, runs {command or 'an unreadable command'}")
    print(f"state: {state}" if state is not None else f"state: unknown ({why})")
    if web and address is not None:
        try:
            print(f"log in at {service_web.login_url(address)}")
        except BadInput:  # an address edited by hand: said above, as it is
            pass
