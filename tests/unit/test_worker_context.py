"""The worker's log buffer: what a handler that logs too fast keeps."""

from __future__ import annotations

import trio

from semantica.limits import LOG_LINE_MAX
from semantica.worker.context import MAX_PENDING_BYTES, MAX_PENDING_LINES, LogBuffer


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


async def test_pending_lines_are_capped_in_bytes_too() -> None:
    """Long lines logged faster than they are sent keep at most MAX_PENDING_BYTES (and the
    end), so the frame that carries them stays far under the channel's cap."""
    logs = LogBuffer(trio.lowlevel.current_trio_token())
    for n in range(200):
        logs.add(f"{n:03} " + "x" * (LOG_LINE_MAX - 4))  # 200 lines of 64 KiB: 12.5 MiB
    lines = logs.take()
    kept = MAX_PENDING_BYTES // LOG_LINE_MAX
    assert lines[0] == f"[semantica: {200 - kept} earlier log lines dropped: logging too fast]"
    assert [line[:3] for line in lines[1:]] == [f"{n:03}" for n in range(200 - kept, 200)]


async def test_a_line_over_the_cap_is_cut_with_a_note() -> None:
    logs = LogBuffer(trio.lowlevel.current_trio_token())
    logs.add("x" * 100_000)
    [line] = logs.take()
    assert line.endswith("xxx… [cut: 100.0 kB log line, limit 64 KiB]")
    assert len(line.encode()) == LOG_LINE_MAX
