"""Who is at the other end of a connection from this machine: the view answers its own user only.

Why: on a shared machine every local user can connect to 127.0.0.1, and two things
hand them what logs in. A browser sends its cookies for 127.0.0.1 to every port of
127.0.0.1 (cookies are not kept apart by port), so a page that another user serves on
the same machine receives the session cookie of whoever opens it; and ``--open``
gives the login URL to a browser on a command line that every user can read (``ps``).
Neither matters if a connection from another user is refused whatever it carries.

Contract:

* :func:`peer_uid` says which user owns the other end of a TCP connection made on
  this machine: the owner of the socket whose address is the peer's and whose
  peer is the view's. It asks the kernel for that one socket (netlink's sock_diag,
  as ``ss`` does: tens of microseconds), or, where that cannot be had, reads the
  kernel's table of TCP sockets (``/proc/net/tcp`` and ``tcp6``, as identd does: a
  few microseconds per socket on the machine). Call it in a thread.
* :func:`listener_uid` says which user listens on an address (``semctl web`` asks
  when its port is taken: a page there that asks for the token is not the view's).
* :func:`allowed` lets the view's own user and root in (root can read the token anyway).
* It fails open: a peer that is not in the table (no ``/proc``, not Linux, another
  network namespace) is not refused, and the other checks (login, session, CSRF) hold
  as before. A peer on another machine is never in the tables: it is not refused by
  this (an address other than loopback is served with a warning).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

#: The state of a listening socket in the tables.
LISTEN = "0A"


def _spelling(host: str, port: int) -> str:
    """``host:port`` as the tables spell it: ``0100007F:9865`` (the address in 32-bit
    words, each in this machine's byte order, then the port, in hex)."""
    packed = ipaddress.ip_address(host.strip("[]").split("%")[0]).packed
    words = (packed[i : i + 4] for i in range(0, len(packed), 4))
    return "".join(f"{int.from_bytes(w, sys.byteorder):08X}" for w in words) + f":{port:04X}"


def _owner(needle: str) -> int | None:
    """The owner of the first socket whose line holds ``needle`` (its addresses, and
    perhaps its state). The tables are searched as text, not parsed: a machine may hold
    thousands of sockets, and this runs for every request."""
    for table in TABLES:
        try:
            text = table.read_text()
        except OSError:
            continue
        at = text.find(needle)
        if at < 0:
            continue
        fields = text[at : text.find("\n", at)].split()
        # local, remote, state, queues, timer, retransmits, uid
        try:
            return int(fields[6])
        except (IndexError, ValueError):
            return None
    return None


# netlink's sock_diag (linux/sock_diag.h, linux/inet_diag.h)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NO_COOKIE = 0xFFFFFFFF
#: Where the uid is in a reply: after the message header (16 bytes), the family,
#: state, timer and retransmits (4), the socket's id (48), expires and queues (12).
UID_AT = 16 + 4 + 48 + 12


class _Unanswered(Exception):
    """sock_diag cannot be asked here (not Linux, no netlink): read the tables."""


def _ask_kernel(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The owner of the TCP socket at ``peer`` connected to ``local``, by sock_diag;
    None if there is no such socket."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
    try:
        src = socket.inet_pton(family, peer[0]).ljust(16, b"\0")
        dst = socket.inet_pton(family, local[0]).ljust(16, b"\0")
    except OSError:
        return None
    socket_id = (
        struct.pack("!HH", peer[1], local[1])
        + src
        + dst
        + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE)
    )
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + socket_id
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as link:
            link.settimeout(1.0)
            link.send(header + request)
            reply = link.recv(8192)
    except (OSError, AttributeError) as exc:  # (no AF_NETLINK: not Linux)
        raise _Unanswered from exc
    (kind,) = struct.unpack_from("=H", reply, 4)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", reply, 16)
        if -code == errno.ENOENT:
            return None
        raise _Unanswered
    if len(reply) < UID_AT + 4:
        raise _Unanswered
    uid: int = struct.unpack_from("=I", reply, UID_AT)[0]
    return uid


def _unmapped(host: str) -> str:
    """An IPv4 address a dual-stack socket names ``::ffff:a.b.c.d`` as itself: the peer's
    own socket is an IPv4 one, listed with the IPv4 sockets."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return host
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return host if mapped is None else str(mapped)


def peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The user owning the socket at ``peer`` that is connected to ``local``; None if
    neither the kernel nor the tables know such a socket (or they cannot be asked).

    The kernel's "no such socket" is the answer for a peer on another machine, except
    for a link-local IPv6 peer (``fe80::…%eth0``), which is asked for without its
    interface and not found: the tables list it, with its owner. (Only then are they
    read after the kernel: reading them costs with every socket of the machine.)
    """
    peer, local = (_unmapped(peer[0]), peer[1]), (_unmapped(local[0]), local[1])
    try:
        uid = _ask_kernel(peer, local)
    except _Unanswered:
        pass
    else:
        if uid is not None or not _link_local(peer[0]):
            return uid
    try:
        return _owner(f" {_spelling(*peer)} {_spelling(*local)} ")
    except ValueError:
        return None


def _link_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_link_local
    except ValueError:
        return False


def listener_uid(host: str, port: int) -> int | None:
    """The user listening on ``host:port`` (or on every address, at that port); None if
    the tables list no one."""
    wildcards = ["::"] if ":" in host else ["0.0.0.0", "::"]  # (:: takes IPv4 too)
    try:
        zero = "::" if ":" in host else "0.0.0.0"
        candidates = [(host, zero), *((w, w) for w in wildcards)]
        needles = [f" {_spelling(at, port)} {_spelling(z, 0)} {LISTEN} " for at, z in candidates]
    except ValueError:
        return None
    for needle in needles:
        uid = _owner(needle)
        if uid is not None:
            return uid
    return None


def allowed(uid: int | None) -> bool:
    """Whether a peer owned by ``uid`` may talk to the view (None: unknown, let through)."""
    return uid is None or uid in (os.getuid(), 0)
