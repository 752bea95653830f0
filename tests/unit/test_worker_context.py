"""The worker's log buffer: what a handler that logs too fast keeps."""

from __future__ import annotations

import trio

from semantica.worker.context import MAX_PENDING_LINES, LogBuffer


async def test_a_flood_of_lines_keeps_the_end_and_says_how_many_went() -> None:
    """Past the cap the oldest pending lines go, so the last ones (the error, usually)
    reach the job's log, after a note of how many were dropped."""
    logs = LogBuffer(trio.lowlevel.current_trio_token())
    for n in range(MAX_PENDING_LINES + 5):
        logs.add(f"line {n}")
    lines = logs.take()
    assert lines[0] == "[semantica: 5 earlier log lines dropped: logging too fast]"
    assert lines[1] == "line 5"
    assert lines[-1] == f"line {MAX_PENDING_LINES + 4}"
    assert len(lines) == MAX_PENDING_LINES + 1
    logs.add("after")
    assert logs.take() == ["after"]  # the count starts again
