"""The size caps: the cutting function, and the supervisor holding what it receives to
them (an older or misbehaving worker). Reads cutting rows stored before the caps are
store behaviour: tests/store/test_long_texts.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantica.clock import FakeClock
from semantica.limits import (
    ERROR_MESSAGE_MAX,
    LOG_LINE_MAX,
    PROGRESS_MESSAGE_MAX,
    RESULT_MAX,
    cut,
    decimal_size,
)
from semantica.models import JobError, JobSpec, JobState
from semantica.protocol import JobFinished
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import Lease
from semantica.supervisor.store.sqlite import SQLiteStore
from semantica.worker.exec_job import _Lines

MB24 = 24_000_000


def _size(text: str) -> int:
    return len(text.encode())


# ---------------------------------------------------------------- cut


def test_text_within_the_cap_is_left_alone() -> None:
    for text in ("", "short", "é" * 500, "x" * 1024):
        assert cut(text, 1024, "log line") == text


def test_text_over_the_cap_keeps_its_beginning_and_a_note_within_the_cap() -> None:
    text = cut("x" * 70_000_000, LOG_LINE_MAX, "log line")
    assert text.endswith("xxx… [cut: 70.0 MB log line, limit 64 KiB]")
    assert _size(text) == LOG_LINE_MAX


def test_a_character_is_never_cut_in_its_middle() -> None:
    """Cut at a byte count, a multi-byte character at the edge goes whole."""
    text = cut("€" * 2000, 1024, "progress message")
    assert text.endswith("€… [cut: 6.0 kB progress message, limit 1 KiB]")
    assert _size(text) <= 1024


def test_lone_surrogates_are_escaped_as_they_travel() -> None:
    assert cut("a \udcff", 1024, "log line") == "a \\udcff"
    text = cut("\udcff" * 1000, 1024, "log line")
    assert text.startswith("\\udcff\\udcff") and _size(text) <= 1024


def test_text_read_in_part_says_only_that_it_was_over() -> None:
    assert cut("x" * 2000, 1024, "error message", whole=False).endswith(
        "xxx… [cut: error message over 1 KiB]"
    )


@given(st.text(max_size=3000), st.sampled_from([1024, 2048, 4096]))
def test_a_cut_text_fits_and_cutting_again_changes_nothing(text: str, cap: int) -> None:
    once = cut(text, cap, "log line")
    assert len(once.encode()) <= cap
    assert cut(once, cap, "log line") == once


def test_sizes_read_like_people_write_them() -> None:
    assert [decimal_size(n) for n in (999, 1000, 64_000, 999_999, 70_000_000)] == [
        "999 bytes",
        "1.0 kB",
        "64.0 kB",
        "1.0 MB",
        "70.0 MB",
    ]


# ---------------------------------------------------------------- the supervisor's side


@pytest.fixture
def jobs(tmp_path: Path) -> JobLifecycle:
    store = SQLiteStore(tmp_path / "semantica.db", FakeClock())
    return JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store))


def _running(jobs: JobLifecycle) -> Lease:
    jobs.enqueue([JobSpec(type="T", max_attempts=1)])
    lease = jobs.store.lease(worker_pid=1)
    assert lease is not None
    return lease


async def test_what_an_old_worker_sends_is_cut_to_the_caps(jobs: JobLifecycle) -> None:
    """A worker that does not cut (an older one) cannot store a huge log line, progress
    message or error: the supervisor cuts them as the worker would have."""
    lease = _running(jobs)
    jobs.log(lease, ["x" * MB24, "next"])
    jobs.progress(lease, 0.5, "p" * MB24)
    progress = jobs.store.get(lease.job_id).progress_message
    error = JobError("exception", "e" * MB24)
    jobs.finished(lease, JobFinished(lease=lease.lease_id, error=error), 1.0)

    long, after = jobs.logs.tail(lease.job_id)
    assert long.endswith("… [cut: 24.0 MB log line, limit 64 KiB]") and after == "next"
    assert _size(long) <= LOG_LINE_MAX
    assert progress is not None and _size(progress) <= PROGRESS_MESSAGE_MAX
    assert progress.endswith("… [cut: 24.0 MB progress message, limit 1 KiB]")
    job = jobs.store.get(lease.job_id)
    assert job.state == JobState.FAILED and job.error is not None
    assert job.error.message.endswith("… [cut: 24.0 MB error message, limit 16 KiB]")
    assert _size(job.error.message) <= ERROR_MESSAGE_MAX


@pytest.mark.parametrize("batch", [False, True])
async def test_a_result_over_the_cap_from_an_old_worker_fails_as_bad_result(
    jobs: JobLifecycle, batch: bool
) -> None:
    """A result over 1 MiB is not stored as DONE: the attempt fails, saying its size."""
    lease = _running(jobs)
    result = b'"' + b"r" * RESULT_MAX + b'"'
    report = JobFinished(lease=lease.lease_id, result=result)
    if batch:
        jobs.finished_many([(lease, report, 1.0)])
    else:
        jobs.finished(lease, report, 1.0)
    job = jobs.store.get(lease.job_id)
    assert job.state == JobState.FAILED and job.result is None
    assert job.error == JobError(
        "bad_result",
        "the handler's result is 1,048,578 bytes of JSON, over the 1 MiB limit; "
        "write large output to a file or the job log",
    )


# ---------------------------------------------------------------- exec output


async def _exec_lines(chunks: list[bytes]) -> list[str]:
    """What the exec job logs for output arriving in these chunks."""
    lines: list[str] = []
    output = _Lines(lines.append)
    for chunk in chunks:
        output.feed(chunk)
    output.end()
    return lines


async def test_exec_output_lines_are_cut_as_they_stream() -> None:
    """A line of output over 64 KiB, in any chunks, keeps its start and a note of its
    size; the lines around it are whole; a last line without newline is kept."""
    long = b"y" * (3 * LOG_LINE_MAX)
    output = b"first\n" + long + b"\nexactly " + b"z" * (LOG_LINE_MAX - 8) + b"\nlast"
    for size in (1000, 65536, len(output)):
        chunks = [output[i : i + size] for i in range(0, len(output), size)]
        first, cut_line, exact, last = await _exec_lines(chunks)
        assert (first, last) == ("first", "last")
        assert cut_line.endswith("yyy… [cut: 196.6 kB log line, limit 64 KiB]")
        assert _size(cut_line) <= LOG_LINE_MAX
        assert exact == "exactly " + "z" * (LOG_LINE_MAX - 8)


async def test_exec_output_that_is_not_utf8_is_replaced_not_fatal() -> None:
    assert await _exec_lines([b"caf\xe9\n\xff" * 2]) == ["caf\ufffd", "\ufffdcaf\ufffd", "\ufffd"]
