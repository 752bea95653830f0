"""One supervisor per state directory: an exclusive flock held for the process's life."""

from __future__ import annotations

import fcntl
import os
from typing import IO

from semantica.errors import ConfigError


def acquire_lock(path: os.PathLike[str]) -> IO[str]:
    """Hold an exclusive flock for the supervisor's life: one supervisor per state directory.

    Raises:
        ConfigError: another supervisor holds it (the message names its pid).
    """
    handle = open(path, "a+")  # noqa: SIM115  # held open for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(
            f"another semanticad (pid {holder}) is running with this state directory"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
