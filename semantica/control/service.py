"""``semctl service``: run the supervisor as a systemd user service or a launchd agent.

``install`` fills in the template (``systemd/semantica.service`` or
``launchd/dev.semantica.semanticad.plist``, shipped inside the package) with
this installation's ``semanticad`` and the ``SEMANTICA_*`` settings of the user
running it, writes it to the user's unit or agent directory and starts it.
With ``--web`` every command does the same for a second service, the web view
(``semctl web --addr ADDR``, templates ``systemd/semantica-web.service`` and
``launchd/dev.semantica.web.plist``; what is particular to it is in
``service_web.py``): one :class:`Service` record names each, and one code path
renders, installs, removes and reports both.
``--dry-run`` prints the file on stdout and what would be done on stderr (so
``semctl service install --dry-run > semantica.service`` saves the file), and
changes nothing. ``uninstall`` stops and removes it; ``status`` says whether it
is installed and what the service manager says.

Exit status: 2 when nothing was changed because of a bad flag or setting, a
missing ``semanticad``, ``systemctl``/``launchctl`` or user service manager;
1 when a step of the install itself failed (the message names it).

Only the standard library, typer and small semantica modules (``service_web``,
``web_addr``, ``errors``; nothing of the web view itself) are imported at the
top: ``semctl`` loads this module on every run to register the sub-command.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from semantica.control import service_web
from semantica.control.web_addr import DEFAULT_ADDR
from semantica.errors import BadInput

LABEL = "dev.semantica.semanticad"
UNIT = "semantica.service"
SYSTEMD = "systemd"
LAUNCHD = "launchd"
PLACEHOLDER_RE = {
    SYSTEMD: re.compile(r"^([ \t]*)# @ENVIRONMENT@\n", re.M),
    LAUNCHD: re.compile(r"^([ \t]*)<!-- @ENVIRONMENT@ -->\n", re.M),
}
# What launchctl print says when the agent is not loaded (its exit status).
LAUNCHCTL_NO_SERVICE = 113
# A stop must outlast the drain and a stopped command's grace; this is the margin.
STOP_MARGIN_S = 10


@dataclass(frozen=True)
class Service:
    """One service ``semctl service`` installs: the supervisor's, or (``--web``) the web view's."""

    unit: str  # the systemd unit's file name
    label: str  # the launchd agent's label, and its plist's name
    log: str  # its log file under ~/Library/Logs/semantica (launchd)
    program: str  # the script it runs, found beside this Python
    what: str  # what it is, in messages

    @property
    def journal(self) -> str:
        """Its name for ``journalctl -u``."""
        return self.unit.removesuffix(".service")


SUPERVISOR = Service(UNIT, LABEL, "semanticad.log", "semanticad", "the supervisor")
WEB = Service(
    service_web.WEB_UNIT, service_web.WEB_LABEL, service_web.WEB_LOG, "semctl", "the web view"
)

service_app = typer.Typer(
    name="service",
    help="Run the supervisor as a service: a systemd user unit, or a launchd agent on macOS.",
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


def target_path(platform: str, service: Service = SUPERVISOR) -> Path:
    """Where the unit or agent goes: the user's systemd unit or LaunchAgents directory."""
    home = Path.home()
    if platform == LAUNCHD:
        return home / "Library" / "LaunchAgents" / f"{service.label}.plist"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(xdg) if os.path.isabs(xdg) else home / ".config"  # XDG: ignore relative
    return config / "systemd" / "user" / service.unit


def _template(platform: str, service: Service) -> str:
    """The template's text: inside the installed package, or at the top of a checkout."""
    if platform == LAUNCHD:
        folder, name = LAUNCHD, f"{service.label}.plist"
    else:
        folder, name = SYSTEMD, service.unit
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / folder / name, package.parent / folder / name):
        if candidate.is_file():
            return candidate.read_text()
    _broken(f"the {folder}/{name} template is missing (looked in {package} and its parent)")


def this_program(service: Service = SUPERVISOR) -> Path:
    """The ``semanticad`` (or ``semctl``) installed beside the running Python.

    Not resolved: a venv's python is a symlink, and its scripts live beside the link.
    """
    return Path(os.path.abspath(sys.executable)).parent / service.program


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


# -- rendering ----------------------------------------------------------------


def _unit_word(word: str) -> str:
    """One word of a unit file line, quoted and escaped as systemd reads it back.

    ``%`` starts a specifier everywhere; ``$`` is left alone (systemd expands
    variables only in the arguments of ExecStart=, never in its command or in
    Environment=).
    """
    word = word.replace("%", "%%")
    if re.fullmatch(r"[^\s\"'\\;]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_once(pattern: str, value: str, text: str) -> str:
    """Replace what lies between ``pattern``'s two groups, which must match once."""
    new, count = re.subn(pattern, lambda m: m[1] + value + m[2], text, count=1, flags=re.M)
    if count != 1:
        _broken(f"a service template has no {pattern!r} to fill in")
    return new


def render(
    platform: str,
    template: str,
    command: dict[str, str],
    home: Path,
    env: dict[str, str],
    stop_timeout: int | None,
) -> str:
    """Fill in a unit or plist template; ``env`` adds to (or overrides) its settings.

    ``command`` gives each marker of the command line its value, one word each:
    ``@SEMANTICAD@`` for the supervisor, ``@SEMCTL@`` and ``@ADDR@`` for the web
    view; ``@HOME@`` (launchd's log paths) is ``home``. ``stop_timeout`` None is no
    limit: systemd's ``infinity``, launchd's 0.
    """
    placeholder = PLACEHOLDER_RE[platform].search(template)
    if any(marker not in template for marker in command) or placeholder is None:
        names = " or ".join([*command, "@ENVIRONMENT@"])
        _broken(f"the {platform} template lacks its {names} marker")
    indent = placeholder.group(1)
    values = {**command, "@HOME@": str(home)}
    # One pass, so a value that happens to hold a marker is left as it is.
    markers = "|".join(re.escape(marker) for marker in values)
    added: list[str] = []
    if platform == SYSTEMD:
        words = {marker: _unit_word(value) for marker, value in values.items()}
        lines = template.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if not line.lstrip().startswith("#"):  # not in the comments that name the markers
                lines[i] = re.sub(markers, lambda m: words[m[0]], line)
        text = "".join(lines)
        stop = "infinity" if stop_timeout is None else str(stop_timeout)
        text = _replace_once(r"^(TimeoutStopSec=).*()$", stop, text)
        for name, value in env.items():
            word = _unit_word(f"{name}={value}")
            own = rf"^(Environment=){re.escape(name)}=.*()$"
            if re.search(own, text, re.M):  # the template sets it: replace, don't repeat
                text = _replace_once(own, word, text)
            else:
                added.append(f"{indent}Environment={word}")
        none = f"{indent}# (none were set)"
    else:
        from xml.sax.saxutils import escape

        # The markers in values, not in the comment that names them.
        text = re.sub(f"<string>({markers})", lambda m: f"<string>{escape(values[m[1]])}", template)
        text = _replace_once(
            r"(<key>ExitTimeOut</key>\s*<integer>)\d+(</integer>)",
            "0" if stop_timeout is None else str(stop_timeout),  # launchd.plist(5): 0 is forever
            text,
        )
        for name, value in env.items():
            own = rf"(<key>{re.escape(name)}</key>\s*<string>)[^<]*(</string>)"
            if re.search(own, text):  # the template sets it: replace, don't repeat
                text = _replace_once(own, escape(value), text)
            else:
                added.append(f"{indent}<key>{escape(name)}</key>")
                added.append(f"{indent}<string>{escape(value)}</string>")
        none = ""
    block = "\n".join(added) if added else none
    return PLACEHOLDER_RE[platform].sub(lambda _: block + "\n" if block else "", text, count=1)


# -- talking to the service manager ------------------------------------------


def _domain() -> str:
    return f"gui/{os.getuid()}"


def _run(command: list[str]) -> tuple[int, str, str]:
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _join(command: list[str]) -> str:
    import shlex

    return shlex.join(command)


def _manager_problem(platform: str) -> str | None:
    """Why the service manager cannot be used from here, or None if it can."""
    import shutil

    if platform == SYSTEMD:
        if shutil.which("systemctl") is None:
            return "systemctl not found: this needs systemd (on macOS: --launchd)"
        probe = ["systemctl", "--user", "show-environment"]
        what = "no systemd user manager to talk to"
    else:
        if shutil.which("launchctl") is None:
            return "launchctl not found: launchd agents need macOS (elsewhere: --systemd)"
        probe = ["launchctl", "print", _domain()]
        what = f"no launchd {_domain()} domain (log in at the desktop)"
    code, out, err = _run(probe)
    if code != 0:
        return f"{what} ({_join(probe)}: {_one_line(err or out) or f'exit status {code}'})"
    return None


def _state(
    platform: str, problem: str | None, service: Service = SUPERVISOR
) -> tuple[str | None, str | None]:
    """What the service manager says about the service, or (None, why it cannot tell).

    ``problem`` is what :func:`_manager_problem` said; nothing is asked if it found one.
    """
    if problem is not None:
        return None, problem
    if platform == SYSTEMD:
        code, out, err = _run(["systemctl", "--user", "is-active", service.unit])
        if out.strip():
            return out.strip(), None
        return None, _one_line(err) or f"systemctl is-active: exit status {code}"
    code, out, err = _run(["launchctl", "print", f"{_domain()}/{service.label}"])
    if code == LAUNCHCTL_NO_SERVICE:
        return "not loaded", None
    if code != 0:
        return None, _one_line(err or out) or f"launchctl print: exit status {code}"
    found = re.search(r"^\s*state = (.+)$", out, re.M)
    return (found.group(1).strip() if found else "loaded"), None


def _installed_command(platform: str, path: Path) -> list[str] | None:
    """The command line an installed unit or plist runs, if it can be read."""
    from xml.parsers.expat import ExpatError

    try:
        if platform == LAUNCHD:
            import plistlib

            with path.open("rb") as f:
                arguments = plistlib.load(f).get("ProgramArguments")
            if not isinstance(arguments, list) or not arguments:
                return None
            return [str(word) for word in arguments]
        import shlex

        found = re.search(r"^ExecStart=(.+)$", path.read_text(), re.M)
        if not found:
            return None
        return [word.replace("%%", "%") for word in shlex.split(found.group(1))] or None
    except (OSError, ValueError, AttributeError, ExpatError):
        return None


def _write(path: Path, text: str) -> None:
    """Replace ``path`` in one step, mode 0644 (launchd refuses group-writable agents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _step(command: list[str], after: str) -> None:
    code, out, err = _run(command)
    if code != 0:
        reason = _one_line(err or out) or f"exit status {code}"
        _broken(f"{_join(command)} failed: {reason} ({after})")
    print(f"ran: {_join(command)}")


def _logs_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "semantica"


def _how_to_look(platform: str, service: Service = SUPERVISOR) -> str:
    if platform == SYSTEMD:
        return f"its log: journalctl --user -u {service.journal}"
    return f"its log: {_logs_dir(Path.home()) / service.log}"


def _web_login(platform: str, addr: str, env: dict[str, str]) -> list[str]:
    """How to log in to the web view's service: its log holds the one-time URL."""
    from semantica.config import locate

    token = locate(env={"HOME": str(Path.home()), **env}).token
    if platform == SYSTEMD:
        find = f"journalctl --user -u {WEB.journal} -o cat | grep 'web view:' | tail -n 1"
        restart = _join(["systemctl", "--user", "restart", WEB.unit])
    else:
        log = str(_logs_dir(Path.home()) / WEB.log)
        find = f"{_join(['grep', 'web view:', log])} | tail -n 1"
        restart = _join(["launchctl", "kickstart", "-k", f"{_domain()}/{WEB.label}"])
    return service_web.login_help(addr, token, find, restart)


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
    text = render(platform, _template(platform, service), markers, home, env, stop_timeout)
    target = target_path(platform, service)

    problem = _manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was written")
    state = _state(platform, problem, service)[0]  # None: cannot tell (a dry run without the tool)
    if platform == SYSTEMD:
        commands = [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", service.unit],
        ]
        if state not in (None, "inactive", "failed"):  # enable --now leaves it running as is
            commands.append(["systemctl", "--user", "restart", service.unit])
    else:
        commands = [["launchctl", "bootstrap", _domain(), str(target)]]
        if state not in (None, "not loaded"):  # bootstrap refuses a loaded agent
            commands.insert(0, ["launchctl", "bootout", f"{_domain()}/{service.label}"])
    alarm = service_web.warning(address) if web else None
    if alarm is not None:  # before the file, so it is not missed in a dry run either
        print(alarm, end="", file=sys.stderr, flush=True)

    if dry_run:
        sys.stdout.write(text)
        sys.stdout.flush()  # the file, then (on stderr) what would be done with it
        plan = [_join(c) for c in commands]
        if platform == LAUNCHD:
            plan.insert(0, _join(["mkdir", "-p", str(_logs_dir(home))]))
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
            _logs_dir(home).mkdir(parents=True, exist_ok=True)
        _write(target, text)
    except OSError as exc:
        _broken(f"cannot write {target}: {exc.strerror or exc}")
    print(f"wrote {target}")
    for command in commands:
        _step(command, f"the file is at {target}; {_how_to_look(platform, service)}")
    state, why = _state(platform, None, service)
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
    problem = _manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was removed")
    if platform == SYSTEMD:
        before = [["systemctl", "--user", "disable", "--now", service.unit]]
        after = [["systemctl", "--user", "daemon-reload"]]
    else:
        # Without launchctl (a dry run) assume it is loaded: show the whole plan.
        loaded = _state(platform, problem, service)[0] != "not loaded"
        before = [["launchctl", "bootout", f"{_domain()}/{service.label}"]] if loaded else []
        after = []
    if dry_run:
        plan = [*before, ["rm", str(target)], *after]
        print("dry run, nothing changed; uninstall would run:")
        for command in plan:
            print(f"  {_join(command)}")
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
    arguments = _installed_command(platform, target) if installed else None
    runs = arguments[0] if arguments else None
    ours = str(this_program(service))
    state, why = _state(platform, _manager_problem(platform), service)
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
    command = _join(arguments) if web and arguments else runs
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
