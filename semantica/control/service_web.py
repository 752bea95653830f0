"""``semctl service ... --web``: the web view as a user service, beside the supervisor's.

What is particular to the web view's unit (``systemd/semantica-web.service``) or
agent (``launchd/dev.semantica.web.plist``); ``service.py`` renders, installs and
removes it the same way as the supervisor's. This module owns:

* its names (unit, label, log file) and its stop timeout;
* its ``--addr``: checked as ``semctl web`` checks it (``web_addr``, which loads
  nothing of the web view), and a fixed port: a service restarted on another
  port each time could not be bookmarked;
* what install says about it: a loud warning for a non-loopback address, and how
  to log in, since the one-time login URL goes to the service's log, not to the
  terminal that ran the install.

It fails with :class:`~semantica.errors.BadInput` (one line) on a bad address and
imports only the standard library and small semantica modules: ``semctl`` loads
it on every run, with ``service.py``.
"""

from __future__ import annotations

from pathlib import Path

from semantica.control.web_addr import is_loopback, parse_addr, url_host
from semantica.errors import BadInput

WEB_UNIT = "semantica-web.service"
WEB_LABEL = "dev.semantica.web"
#: Its log file under ~/Library/Logs/semantica (launchd; systemd has the journal).
WEB_LOG = "web.log"
#: A stop closes the live streams and ends within a couple of seconds; the margin is wide.
WEB_STOP_S = 10
#: How long a login URL works (the web view's own rule, repeated for the help text).
CODE_TTL_TEXT = "15 minutes"

WARNING = """\
semctl: WARNING: the web view's service will listen on {addr}, not a loopback address.
semctl: WARNING: anyone who can reach this port can try to log in, and the traffic (the
semctl: WARNING: session cookie, job data) is plain HTTP. Prefer the default (127.0.0.1)
semctl: WARNING: and an SSH tunnel.
"""


def checked_addr(addr: str) -> str:
    """``addr`` if ``semctl web --addr ADDR`` would take it with a fixed port; BadInput if not."""
    _, port = parse_addr(addr)
    if port == 0:
        raise BadInput(
            "--addr: a service needs a fixed port (0 would pick another one at every start)"
        )
    return addr


def warning(addr: str) -> str | None:
    """The warning install prints for an address beyond this machine, or None."""
    host, _ = parse_addr(addr)
    return None if is_loopback(host) else WARNING.format(addr=addr)


def login_url(addr: str) -> str:
    """The login page, where the token can be pasted."""
    host, port = parse_addr(addr)
    return f"http://{url_host(host)}:{port}/login"


def login_help(addr: str, token: Path, find_url: str, restart: str) -> list[str]:
    """How to log in to the service, for install's output.

    ``find_url`` shows the last login URL in the service's log; ``restart``
    restarts it, which prints a new one.
    """
    return [
        f"log in with the one-time URL it printed (it works once, within {CODE_TTL_TEXT}):",
        f"  {find_url}",
        f"  (a new one at every start: {restart})",
        f"or open {login_url(addr)} and paste the token in {token}",
    ]


def installed_addr(arguments: list[str]) -> str | None:
    """The ``--addr`` an installed unit's command line gives ``semctl web``, if any."""
    for i, word in enumerate(arguments[:-1]):
        if word == "--addr":
            return arguments[i + 1]
    return next((w.split("=", 1)[1] for w in arguments if w.startswith("--addr=")), None)
