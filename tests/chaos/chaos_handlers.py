"""Handlers the chaos suite runs in real workers (``--handlers chaos_handlers``).

Each handler appends ``"<job_id> <attempt> <pid> start"`` to the ledger file named
in the payload's ``ledger`` key before it works, and ``"... end"`` after, so a
test can tell which attempts ran, on which worker, and which got to their end.
A line is one ``os.write`` on an ``O_APPEND`` descriptor: whole lines, never
interleaved, even with several workers and a worker killed at any moment.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from semantica import handler

_fds: dict[str, int] = {}  # ledger path -> descriptor, kept for the worker's life


def ledger(ctx: Any, payload: Any, what: str) -> None:
    """Append one ledger line for this attempt (nothing if the payload names no ledger)."""
    path = payload.get("ledger") if isinstance(payload, dict) else None
    if not path:
        return
    fd = _fds.get(path)
    if fd is None:
        fd = _fds[path] = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
    os.write(fd, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {what}\n".encode())


@handler("CHAOS_SLEEP")
def chaos_sleep(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """A blocking handler: ledger ``start``, sleep ``seconds``, ledger ``end``."""
    ledger(ctx, payload, "start")
    seconds = payload.get("seconds", 0)
    if seconds:
        time.sleep(seconds)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


@handler("CHAOS_ASYNC")
async def chaos_async(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """An async (trio) handler: ledger ``start``, sleep ``seconds``, ledger ``end``."""
    ledger(ctx, payload, "start")
    seconds = payload.get("seconds", 0)
    if seconds:
        await trio.sleep(seconds)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


@handler("CHAOS_POISON")
def chaos_poison(ctx: Any, payload: dict[str, Any]) -> None:
    """Ledger ``start``, then kill the worker running it (every attempt)."""
    ledger(ctx, payload, "start")
    os._exit(3)
