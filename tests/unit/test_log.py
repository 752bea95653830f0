"""The supervisor's own log: JSON lines on stderr and in daemon.log, rotated by size."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import struct
import sys
import termios
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from semantica.supervisor import log as supervisor_log
from semantica.supervisor.stderr_writer import StderrWriter


@pytest.fixture
def json_logs(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> Iterator[Path]:
    """structlog set up as the supervisor sets it up in JSON mode; undone afterwards.

    It asks for ``capfd`` so that stderr is already the captured one.
    """
    path = tmp_path / "daemon.log"
    supervisor_log.configure("json", path)
    try:
        yield path
    finally:
        structlog.reset_defaults()
        supervisor_log._sink = supervisor_log._json_lines = None


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_an_event_is_one_json_line_on_stderr_and_in_the_file(
    json_logs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    structlog.get_logger("t").info("job done", job_id=7, duration_ms=1.5)
    [printed] = _lines(capfd.readouterr().err)
    [filed] = _lines(json_logs.read_text())
    assert printed == filed
    assert printed["event"] == "job done" and printed["level"] == "info"
    assert printed["job_id"] == 7 and printed["duration_ms"] == 1.5
    stamp = str(printed["timestamp"])
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-26T23:04:40.324940Z")
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - when) < timedelta(seconds=5)


def test_info_many_writes_what_info_would_for_each_event(
    json_logs: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logger = structlog.get_logger("t")
    logger.info("job started", job_id=1, state="RUNNING")
    supervisor_log.info_many(
        logger,
        [("job started", {"job_id": 2, "state": "RUNNING"}), ("job done", {"job_id": 2})],
    )
    printed = _lines(capfd.readouterr().err)
    assert printed == _lines(json_logs.read_text())
    assert [(p["event"], p["job_id"]) for p in printed] == [
        ("job started", 1),
        ("job started", 2),
        ("job done", 2),
    ]
    # Same keys, in the same order, as one event logged alone.
    assert list(printed[1]) == list(printed[0])
    assert all(p["level"] == "info" for p in printed)


def test_info_many_without_json_mode_goes_through_structlog() -> None:
    with structlog.testing.capture_logs() as events:
        supervisor_log.info_many(structlog.get_logger("t"), [("job done", {"job_id": 3})])
    assert events == [{"event": "job done", "job_id": 3, "log_level": "info"}]


def test_the_file_is_rotated_by_size_keeping_three_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "daemon.log"
    target = supervisor_log.RotatingFile(path, max_bytes=100)
    for n in range(40):
        target.write_line(f"line {n:02d} ".encode() + b"x" * 20)
    target.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    newest = path.read_text().splitlines()
    assert newest[-1].startswith("line 39")
    older = (tmp_path / "daemon.log.1").read_text().splitlines()
    assert int(older[-1].split()[1]) == int(newest[0].split()[1]) - 1  # nothing lost between


def test_a_file_that_cannot_be_written_drops_lines_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "daemon.log"
    target = supervisor_log.RotatingFile(path)
    target.write_line(b"lost")  # the directory does not exist: dropped, no error
    path.parent.mkdir()
    target.write_line(b"kept")
    target.close()
    assert path.read_text() == "kept\n"


def _note(n: int) -> bytes:
    return f"{n} log lines dropped\n".encode()


def _full_pipe(blocking: bool = True) -> tuple[int, int, int]:
    """A pipe already full (as if its reader had stopped): read end, write end, bytes in it.

    ``blocking=False`` leaves the write end non-blocking (``O_NONBLOCK``).
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    filled = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filled += os.write(write_end, b"-" * 4096)
    os.set_blocking(write_end, blocking)
    return read_end, write_end, filled


def _read_past(fd: int, filled: int, needle: bytes) -> bytes:
    """Read ``fd`` until ``needle`` came by; what came after the ``filled`` filler bytes."""
    seen = b""
    while needle not in seen[filled:]:
        seen += os.read(fd, 1 << 16)
    assert seen[:filled] == b"-" * filled
    return seen[filled:]


def test_stderr_writer_never_waits_for_a_reader_and_counts_what_it_drops() -> None:
    """A pipe nobody reads: writes return at once; past the queue, lines are dropped and
    counted; once the reader is back it gets the queued lines, then the count."""
    read_end, write_end, filled = _full_pipe()
    writer = StderrWriter(write_end, _note, queue_bytes=4096)
    try:
        line = b"x" * 99 + b"\n"
        began = time.monotonic()
        for _ in range(2000):
            writer.write(line)
        assert time.monotonic() - began < 1.0  # a blocking write would never return
        assert not writer.flush(0.05)  # nobody reads: the flush gives up
        dropped = writer.dropped
        assert 2000 - (4096 // 100 + 1) <= dropped < 2000  # queued: under the cap, plus one
        seen = _read_past(read_end, filled, f"{dropped} log lines dropped".encode())
        assert writer.flush(10)
        writer.write(b"after\n")
        assert writer.flush(10)
        seen += os.read(read_end, 1 << 16)
        lines = seen.splitlines()
        assert lines[-2:] == [f"{dropped} log lines dropped".encode(), b"after"]
        assert lines[:-2] == [line.strip()] * (2000 - dropped)  # each line written or counted
    finally:
        writer.close()
        os.close(read_end)
        os.close(write_end)


def test_stderr_writer_closed_stderr_drops_quietly() -> None:
    """A stderr whose reader went away (EPIPE): lines vanish without an error or a wait,
    counted as dropped; a flush says they were not written, and does not wait for them."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    writer = StderrWriter(write_end, _note)
    try:
        for _ in range(100):
            writer.write(b"line\n")
        began = time.monotonic()
        assert not writer.flush(10)
        assert time.monotonic() - began < 5
        assert writer.dropped == 100
    finally:
        writer.close()
        os.close(write_end)


def test_stderr_writer_lets_a_line_over_the_queue_cap_through_to_a_reader_keeping_up() -> None:
    """A line bigger than the whole queue, with nothing waiting before it, is written whole,
    not dropped."""
    read_end, write_end = os.pipe()
    writer = StderrWriter(write_end, _note, queue_bytes=4096)
    try:
        big = b"b" * 20000 + b"\n"  # the pipe (64 KiB) takes it at once
        writer.write(big)
        assert writer.flush(10)
        writer.write(b"after\n")
        assert writer.flush(10)
        seen = b""
        while not seen.endswith(b"after\n"):
            seen += os.read(read_end, 1 << 16)
        assert seen == big + b"after\n"
        assert writer.dropped == 0
    finally:
        writer.close()
        os.close(read_end)
        os.close(write_end)


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    """Read ``fd`` until what came ends with ``needle``, or until ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    seen = b""
    while not seen.endswith(needle):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        seen += os.read(fd, 1 << 16)
    return seen


def test_stderr_writer_waits_for_a_non_blocking_stderr_and_loses_nothing() -> None:
    """stderr is non-blocking (someone set O_NONBLOCK on a shared pipe) and its reader is
    behind: the pipe takes part of a batch, then refuses more (EAGAIN). The writer waits
    for it, in its thread: once the reader is back, every line comes out whole, in order."""
    read_end, write_end, filled = _full_pipe(blocking=False)
    os.read(read_end, 4096)  # room for part of the lines only
    filled -= 4096
    writer = StderrWriter(write_end, _note)
    try:
        lines = [f"line {n} ".encode() + b"x" * 990 + b"\n" for n in range(10)]
        for line in lines:
            writer.write(line)
        assert not writer.flush(0.5)  # the pipe cannot take them all: not written yet
        seen = _read_until(read_end, lines[-1])
        assert seen[:filled] == b"-" * filled
        assert seen[filled:] == b"".join(lines)
        assert writer.flush(10)
        assert writer.dropped == 0
    finally:
        writer.close()
        os.close(read_end)
        os.close(write_end)


def test_stderr_writer_flush_waits_for_the_note_of_dropped_lines() -> None:
    """Lines were dropped while the reader was away; it is back: when flush() returns
    saying all was written, so was the note saying how many were dropped.

    The note goes out right after the last queued line; a flush that returned in
    between would miss it. That is a race between threads, so: many rounds, several
    flushes waiting in each, and the interpreter switching threads as often as it can
    (before the note went out with the last line, about one round in twenty failed).
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(300):
            _flushes_after_drops(flushes=8)
    finally:
        sys.setswitchinterval(interval)


def _flushes_after_drops(flushes: int) -> None:
    """Lines dropped at a full pipe; ``flushes`` threads flush while the reader comes back."""
    line = b"x" * 99 + b"\n"
    read_end, write_end, filled = _full_pipe()
    writer = StderrWriter(write_end, _note, queue_bytes=4096)
    flushed: list[tuple[bool, int]] = []

    def flush() -> None:
        ok = writer.flush(10)
        flushed.append((ok, _unread(read_end)))  # what was written by then

    try:
        for _ in range(100):
            writer.write(line)
        dropped = writer.dropped
        assert dropped  # the queue was full
        flushers = [threading.Thread(target=flush) for _ in range(flushes)]
        for flusher in flushers:
            flusher.start()
        # The reader is back: one read takes the filler whole, before the writer can
        # add a byte, so all that is left in the pipe is the writer's.
        assert len(os.read(read_end, filled)) == filled
        for flusher in flushers:
            flusher.join(20)
        expected = (100 - dropped) * len(line) + len(_note(dropped))
        assert flushed == [(True, expected)] * flushes
    finally:
        writer.close()
        os.close(read_end)
        os.close(write_end)


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe whose read end is ``fd``."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
