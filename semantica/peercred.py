"""Who is at the other end of a Unix socket: the kernel's answer, no string in between.

Both sides use it. The supervisor serves only its own user (and root); a
client talks only to a supervisor run by its own user (or root), so that a
socket someone else put at the expected path never sees the token.
"""

from __future__ import annotations

# _socket, not socket: the socket module wraps it in enums and loads selectors, ~3 ms of
# every semctl start, and a client needs neither (socket.socket is _socket.socket's subclass).
import _socket
import os
import struct
import sys

from semantica.errors import AuthError


def peer_uid(sock: _socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket, or None if the OS won't say.

    For a client's socket that is the uid of the process that called ``listen``.
    """
    if hasattr(_socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        data = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", data)
        return int(uid)
    if sys.platform == "darwin":  # LOCAL_PEERCRED: struct xucred {u_int version; uid_t uid; ...}
        sol_local, local_peercred = 0, 0x001
        data = sock.getsockopt(sol_local, local_peercred, 76)
        return int(struct.unpack_from("I", data, 4)[0])
    return None


def uid_allowed(uid: int | None) -> bool:
    """Our own uid, or root; unknown (no peer credentials) is allowed."""
    return uid is None or uid == os.geteuid() or uid == 0


def check_server(sock: _socket.socket, where: object) -> None:
    """Make sure the supervisor at ``where`` runs as us (or root), before the token is sent.

    Raises:
        AuthError: another user's process listens there.
    """
    uid = peer_uid(sock)
    if not uid_allowed(uid):
        raise AuthError(
            f"refused: {where} is served by uid {uid}, not by you (uid {os.geteuid()}) "
            "or root; the token was not sent"
        )
