"""Where ``semctl web`` listens: its ``--addr``, parsed and checked.

Standard library only, outside the ``web/`` package, so that ``semctl service
install --web`` checks an address exactly as ``semctl web`` will, without loading
the web view (starlette, hypercorn) on the way.

Contract: :func:`parse_addr` takes ``HOST:PORT`` (``[v6]:PORT`` for IPv6) where
HOST is an IP address or ``localhost`` and PORT is 0-65535 (0: any free port), and
returns the host (without brackets) and the port; anything else raises
:class:`~semantica.errors.BadInput` with a one-line message naming ``--addr``.
"""

from __future__ import annotations

import ipaddress

from semantica.errors import BadInput

#: The address of ``semctl web`` when ``--addr`` is not given.
DEFAULT_ADDR = "127.0.0.1:7433"


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a host and a port; BadInput if it is not."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not host:
        raise BadInput(f"--addr must be HOST:PORT (e.g. 127.0.0.1:7433), not {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise BadInput(f"--addr: the port must be a number, not {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise BadInput(f"--addr: the port must be 0-65535, not {port}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise BadInput(
                f"--addr: the host must be an IP address or localhost, not {host!r}"
            ) from None
    return host, port


def is_loopback(host: str) -> bool:
    """Whether a host :func:`parse_addr` returned is reached from this machine alone."""
    return host == "localhost" or ipaddress.ip_address(host).is_loopback


def url_host(host: str) -> str:
    """The host to print in the URL: a wildcard address is reached on loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
