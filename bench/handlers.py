"""Handlers the benchmark's workers run (SEMANTICA_HANDLERS=bench.handlers)."""

from __future__ import annotations

import time
from typing import Any

from semantica import PermanentError, handler


@handler("NOOP")
def noop(ctx: Any, payload: Any) -> None:
    return None


@handler("STAMP")
def stamp(ctx: Any, payload: Any) -> float:
    """Return when the handler started, on the system-wide monotonic clock."""
    return time.monotonic()


@handler("LOGGED")
def logged(ctx: Any, payload: Any) -> None:
    """Log one line: the job W5 shows, waits for and reads the log of."""
    ctx.log("one line for semctl logs", step=1)


@handler("ANOOP")
async def anoop(ctx: Any, payload: Any) -> None:
    """A no-op as an async handler: it runs on the worker's event loop, with no thread."""
    return None


@handler("FAIL")
def fail(ctx: Any, payload: Any) -> None:
    """Fail at once, without retry (bench/web.py's FAILED jobs)."""
    raise PermanentError("failed on purpose")
