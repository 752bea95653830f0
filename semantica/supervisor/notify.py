"""systemd's readiness protocol: a few datagrams to ``$NOTIFY_SOCKET``, no dependency.

``READY=1`` once the socket is bound and the workers are up, ``STOPPING=1``
when a drain starts. Without ``NOTIFY_SOCKET`` (not under systemd) every call
does nothing.
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``); True if a notify socket took it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
