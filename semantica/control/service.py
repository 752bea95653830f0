"""``semctl service``: run the supervisor as a systemd user service or a launchd agent.

``install`` fills in the template (``systemd/semantica.service`` or
``launchd/dev.semantica.semanticad.plist``, shipped inside the package) with
this installation's ``semanticad`` and the ``SEMANTICA_*`` settings of the user
running it, writes it to the user's unit or agent directory and starts it.
``--dry-run`` prints the file on stdout and what would be done on stderr (so
``semctl service install --dry-run > semantica.service`` saves the file), and
changes nothing. ``uninstall`` stops and removes it; ``status`` says whether it
is installed and what the service manager says.

Exit status: 2 when nothing was changed because of a bad flag or setting, a
missing ``semanticad``, ``systemctl``/``launchctl`` or user service manager;
1 when a step of the install itself failed (the message names it).

Only the standard library and typer are imported at the top: ``semctl`` loads
this module on every run to register the sub-command.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

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


def target_path(platform: str) -> Path:
    """Where the unit or agent goes: the user's systemd unit or LaunchAgents directory."""
    home = Path.home()
    if platform == LAUNCHD:
        return home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(xdg) if os.path.isabs(xdg) else home / ".config"  # XDG: ignore relative
    return config / "systemd" / "user" / UNIT


def _template(platform: str) -> str:
    """The template's text: inside the installed package, or at the top of a checkout."""
    folder, name = (LAUNCHD, f"{LABEL}.plist") if platform == LAUNCHD else (SYSTEMD, UNIT)
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / folder / name, package.parent / folder / name):
        if candidate.is_file():
            return candidate.read_text()
    _broken(f"the {folder}/{name} template is missing (looked in {package} and its parent)")


def this_semanticad() -> Path:
    """The ``semanticad`` installed beside the running Python.

    Not resolved: a venv's python is a symlink, and its scripts live beside the link.
    """
    return Path(os.path.abspath(sys.executable)).parent / "semanticad"


def _semanticad() -> Path:
    path = this_semanticad()
    if not (path.is_file() and os.access(path, os.X_OK)):
        _bad(f"no semanticad beside this Python ({path}): install semantica in this environment")
    return path


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
    semanticad: Path,
    home: Path,
    env: dict[str, str],
    stop_timeout: int | None,
) -> str:
    """Fill in a unit or plist template; ``env`` adds to (or overrides) its settings.

    ``stop_timeout`` None is no limit: systemd's ``infinity``, launchd's 0.
    """
    placeholder = PLACEHOLDER_RE[platform].search(template)
    if "@SEMANTICAD@" not in template or placeholder is None:
        _broken(f"the {platform} template lacks its @SEMANTICAD@ or @ENVIRONMENT@ marker")
    indent = placeholder.group(1)
    added: list[str] = []
    if platform == SYSTEMD:
        exec_word, home_word = _unit_word(str(semanticad)), _unit_word(str(home))
        lines = template.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if not line.lstrip().startswith("#"):  # not in the comments that name the markers
                lines[i] = line.replace("@SEMANTICAD@", exec_word).replace("@HOME@", home_word)
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
        text = template.replace("<string>@SEMANTICAD@", f"<string>{escape(str(semanticad))}")
        text = text.replace("<string>@HOME@", f"<string>{escape(str(home))}")
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


def _state(platform: str, problem: str | None) -> tuple[str | None, str | None]:
    """What the service manager says about the service, or (None, why it cannot tell).

    ``problem`` is what :func:`_manager_problem` said; nothing is asked if it found one.
    """
    if problem is not None:
        return None, problem
    if platform == SYSTEMD:
        code, out, err = _run(["systemctl", "--user", "is-active", UNIT])
        if out.strip():
            return out.strip(), None
        return None, _one_line(err) or f"systemctl is-active: exit status {code}"
    code, out, err = _run(["launchctl", "print", f"{_domain()}/{LABEL}"])
    if code == LAUNCHCTL_NO_SERVICE:
        return "not loaded", None
    if code != 0:
        return None, _one_line(err or out) or f"launchctl print: exit status {code}"
    found = re.search(r"^\s*state = (.+)$", out, re.M)
    return (found.group(1).strip() if found else "loaded"), None


def _installed_semanticad(platform: str, path: Path) -> str | None:
    """The semanticad an installed unit or plist runs, if it can be read."""
    from xml.parsers.expat import ExpatError

    try:
        if platform == LAUNCHD:
            import plistlib

            with path.open("rb") as f:
                arguments = plistlib.load(f).get("ProgramArguments") or [None]
            return str(arguments[0]) if arguments[0] else None
        import shlex

        found = re.search(r"^ExecStart=(.+)$", path.read_text(), re.M)
        if not found:
            return None
        return shlex.split(found.group(1))[0].replace("%%", "%")
    except (OSError, ValueError, IndexError, AttributeError, ExpatError):
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


def _how_to_look(platform: str) -> str:
    if platform == SYSTEMD:
        return "its log: journalctl --user -u semantica"
    return f"its log: {_logs_dir(Path.home()) / 'semanticad.log'}"


# -- the commands -------------------------------------------------------------


@service_app.command()
def install(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
) -> None:
    """Install the supervisor as a user service and start it.

    Writes a systemd user unit (~/.config/systemd/user/semantica.service) or a
    launchd agent (~/Library/LaunchAgents/dev.semantica.semanticad.plist) that
    runs this installation's semanticad with the SEMANTICA_* settings set now,
    then enables and starts it. Run again after an upgrade: it restarts the service.
    """
    platform = _platform(systemd, launchd)
    semanticad = _semanticad()
    env = _service_env(ctx)
    home = Path.home()
    text = render(platform, _template(platform), semanticad, home, env, _stop_timeout(env))
    target = target_path(platform)

    problem = _manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was written")
    state = _state(platform, problem)[0]  # None: cannot tell (a dry run without the tool)
    if platform == SYSTEMD:
        commands = [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", UNIT],
        ]
        if state not in (None, "inactive", "failed"):  # enable --now leaves it running as is
            commands.append(["systemctl", "--user", "restart", UNIT])
    else:
        commands = [["launchctl", "bootstrap", _domain(), str(target)]]
        if state not in (None, "not loaded"):  # bootstrap refuses a loaded agent
            commands.insert(0, ["launchctl", "bootout", f"{_domain()}/{LABEL}"])

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
        _step(command, f"the file is at {target}; {_how_to_look(platform)}")
    state, why = _state(platform, None)
    name = UNIT if platform == SYSTEMD else LABEL
    print(f"{name}: {state or why}; `semctl status` talks to it, {_how_to_look(platform)}")


@service_app.command()
def uninstall(
    dry_run: DryRunOpt = False,
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
) -> None:
    """Stop the user service, disable it and remove its file."""
    platform = _platform(systemd, launchd)
    target = target_path(platform)
    if not target.exists():
        print(f"not installed (no {target}); nothing to do")
        return
    problem = _manager_problem(platform)
    if problem is not None and not dry_run:
        _bad(f"{problem}; nothing was removed")
    if platform == SYSTEMD:
        before = [["systemctl", "--user", "disable", "--now", UNIT]]
        after = [["systemctl", "--user", "daemon-reload"]]
    else:
        # Without launchctl (a dry run) assume it is loaded: show the whole plan.
        loaded = _state(platform, problem)[0] != "not loaded"
        before = [["launchctl", "bootout", f"{_domain()}/{LABEL}"]] if loaded else []
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


@service_app.command()
def status(
    systemd: SystemdOpt = False,
    launchd: LaunchdOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Whether the user service is installed, what it runs, and what its manager says."""
    platform = _platform(systemd, launchd)
    target = target_path(platform)
    installed = target.is_file()
    runs = _installed_semanticad(platform, target) if installed else None
    ours = str(this_semanticad())
    state, why = _state(platform, _manager_problem(platform))
    report: dict[str, Any] = {
        "platform": platform,
        "file": str(target),
        "installed": installed,
        "semanticad": runs,
        "this_installation": None if runs is None else runs == ours,
        "state": state,
        "error": why,
    }
    if json_out:
        import json

        print(json.dumps(report))
        return
    kind = "systemd user unit" if platform == SYSTEMD else "launchd agent"
    if not installed:
        print(f"{kind} {target}: not installed (semctl service install)")
    elif runs is not None and runs != ours:
        print(f"{kind} {target}: installed, runs {runs} (this installation's is {ours})")
    else:
        print(f"{kind} {target}: installed, runs {runs or 'an unreadable command'}")
    print(f"state: {state}" if state is not None else f"state: unknown ({why})")
