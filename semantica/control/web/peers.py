"""Who is at the other end of a loopback connection: the view answers its own user only.

Why: on a shared machine every local user can connect to 127.0.0.1, and two things
hand them what logs in. A browser sends its cookies for 127.0.0.1 to every port of
127.0.0.1 (cookies are not kept apart by port), so a page that another user serves on
the same machine receives the session cookie of whoever opens it; and ``--open``
gives the login URL to a browser on a command line that every user can read (``ps``).
Neither matters if a connection from another user is refused whatever it carries.

Contract:

* :func:`peer_uid` says which user owns the other end of a TCP connection made on
  this machine: the owner of the socket whose address is the peer's and whose
  peer is the view's, in the kernel's table of TCP sockets (``/proc/net/tcp`` and
  ``tcp6``, as identd reads it). It reads the table (a file read that grows with the
  machine's sockets): call it in a thread.
* :func:`listener_uid` says which user listens on an address (``semctl web`` asks
  when its port is taken: a page there that asks for the token is not the view's).
* :func:`allowed` lets the view's own user and root in (root can read the token anyway).
* It fails open: a peer that is not in the table (no ``/proc``, not Linux, another
  network namespace) is not refused, and the other checks (login, session, CSRF) hold
  as before. It is only used when the view listens on a loopback address; on another
  address the peer may be another machine, which the table does not know.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

Address = tuple[bytes, int]  # an address as packed bytes (4 or 16), and a port


def _decode(field: str) -> Address:
    """``0100007F:9865`` (the table's spelling: 32-bit words in host order) as an Address."""
    hex_ip, _, hex_port = field.partition(":")
    words = [hex_ip[i : i + 8] for i in range(0, len(hex_ip), 8)]
    packed = b"".join(int(word, 16).to_bytes(4, sys.byteorder) for word in words)
    return packed, int(hex_port, 16)


def _address(host: str, port: int) -> Address:
    return ipaddress.ip_address(host.strip("[]").split("%")[0]).packed, port


#: The state of a listening socket in the tables.
LISTEN = "0A"


def _owner(local: Address, remote: Address | None) -> int | None:
    """The owner of the socket at ``local`` connected to ``remote`` (None: listening)."""
    for table in TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8:
                continue
            try:
                if _decode(fields[1]) != local:
                    continue
                found = fields[3] == LISTEN if remote is None else _decode(fields[2]) == remote
                if found:
                    return int(fields[7])
            except ValueError:
                continue
    return None


def peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The user owning the socket at ``peer`` that is connected to ``local``; None if the
    tables do not list it (or cannot be read)."""
    try:
        return _owner(_address(*peer), _address(*local))
    except ValueError:
        return None


def listener_uid(host: str, port: int) -> int | None:
    """The user listening on ``host:port`` (or on every address, at that port); None if
    the tables list no one."""
    try:
        exact = _address(host, port)
    except ValueError:
        return None
    wildcard = (bytes(len(exact[0])), port)
    for address in (exact, wildcard):
        uid = _owner(address, None)
        if uid is not None:
            return uid
    return None


def allowed(uid: int | None) -> bool:
    """Whether a peer owned by ``uid`` may talk to the view (None: unknown, let through)."""
    return uid is None or uid in (os.getuid(), 0)
