"""The files ``semctl service`` installs: which, where, rendered from which template.

Owns the :class:`Service` records (the supervisor's, the web view's), where each
one's systemd unit or launchd plist goes, the templates shipped in the package
(``systemd/``, ``launchd/``; at the top of a checkout too), rendering them (the
command line, the ``SEMANTICA_*`` settings, the stop timeout, each escaped as
systemd or XML reads it back), reading the command line back from an installed
file, and writing one in a single step.

Promises: a rendered file runs exactly the given words with exactly the given
settings, or rendering fails. A missing template or one without its markers
raises :class:`~semantica.errors.SemanticaError` (exit status 1: the installation
is broken, not the user's input); nothing here prints or exits. Standard library
only: ``semctl`` loads it on every run.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from semantica.control import service_web
from semantica.errors import SemanticaError

LABEL = "dev.semantica.semanticad"
UNIT = "semantica.service"
SYSTEMD = "systemd"
LAUNCHD = "launchd"
PLACEHOLDER_RE = {
    SYSTEMD: re.compile(r"^([ \t]*)# @ENVIRONMENT@\n", re.M),
    LAUNCHD: re.compile(r"^([ \t]*)<!-- @ENVIRONMENT@ -->\n", re.M),
}


@dataclass(frozen=True)
class Service:
    """One service ``semctl service`` installs: the supervisor's, or (``--web``) the web view's."""

    unit: str  # the systemd unit's file name
    label: str  # the launchd agent's label, and its plist's name
    log: str  # its log file under ~/Library/Logs/semantica (launchd)
    program: str  # the script it runs, found beside this Python

    @property
    def journal(self) -> str:
        """Its name for ``journalctl -u``."""
        return self.unit.removesuffix(".service")


SUPERVISOR = Service(UNIT, LABEL, "semanticad.log", "semanticad")
WEB = Service(service_web.WEB_UNIT, service_web.WEB_LABEL, service_web.WEB_LOG, "semctl")


def target_path(platform: str, service: Service = SUPERVISOR) -> Path:
    """Where the unit or agent goes: the user's systemd unit or LaunchAgents directory."""
    home = Path.home()
    if platform == LAUNCHD:
        return home / "Library" / "LaunchAgents" / f"{service.label}.plist"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(xdg) if os.path.isabs(xdg) else home / ".config"  # XDG: ignore relative
    return config / "systemd" / "user" / service.unit


def template(platform: str, service: Service) -> str:
    """The template's text: inside the installed package, or at the top of a checkout."""
    if platform == LAUNCHD:
        folder, name = LAUNCHD, f"{service.label}.plist"
    else:
        folder, name = SYSTEMD, service.unit
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / folder / name, package.parent / folder / name):
        if candidate.is_file():
            return candidate.read_text()
    raise SemanticaError(
        f"the {folder}/{name} template is missing (looked in {package} and its parent)"
    )


def this_program(service: Service = SUPERVISOR) -> Path:
    """The ``semanticad`` (or ``semctl``) installed beside the running Python.

    Not resolved: a venv's python is a symlink, and its scripts live beside the link.
    """
    return Path(os.path.abspath(sys.executable)).parent / service.program


def _unit_word(word: str) -> str:
    """One word of a unit file line, quoted and escaped as systemd reads it back.

    ``%`` starts a specifier everywhere; ``$`` is left alone (systemd expands
    variables only in the arguments of ExecStart=, never in its command or in
    Environment=; the only argument rendered, the web view's address, is checked
    and holds none).
    """
    word = word.replace("%", "%%")
    if re.fullmatch(r"[^\s\"'\\;]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _replace_once(pattern: str, value: str, text: str) -> str:
    """Replace what lies between ``pattern``'s two groups, which must match once."""
    new, count = re.subn(pattern, lambda m: m[1] + value + m[2], text, count=1, flags=re.M)
    if count != 1:
        raise SemanticaError(f"a service template has no {pattern!r} to fill in")
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
        raise SemanticaError(f"the {platform} template lacks its {names} marker")
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


def installed_command(platform: str, path: Path) -> list[str] | None:
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


def write_file(path: Path, text: str) -> None:
    """Replace ``path`` in one step, mode 0644 (launchd refuses group-writable agents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def logs_dir(home: Path) -> Path:
    return home / "Library" / "Logs" / "semantica"
