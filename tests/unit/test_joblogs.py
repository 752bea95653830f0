"""Job log files: appending, tailing, the size cap and removal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from semantica.supervisor.joblogs import JobLogs

CAP = 4096


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[JobLogs]:
    """Job logs in a temporary directory with a small cap."""
    jl = JobLogs(tmp_path / "logs", cap_bytes=CAP)
    yield jl
    jl.close_all()


def _bytes_on_disk(logs: JobLogs, job_id: int) -> int:
    return sum(
        p.stat().st_size
        for p in (logs.directory / f"{job_id}.log", logs.directory / f"{job_id}.log.1")
        if p.exists()
    )


def test_directory_is_private(tmp_path: Path) -> None:
    """The log directory is created readable by its owner only."""
    jl = JobLogs(tmp_path / "a" / "logs", cap_bytes=CAP)
    assert (jl.directory.stat().st_mode & 0o777) == 0o700


def test_append_then_tail_in_order(logs: JobLogs) -> None:
    """Lines appended in several calls come back in the order written."""
    logs.append(1, ["one", "two"])
    logs.append(1, ["three"])
    logs.append(2, ["other job"])
    assert logs.tail(1) == ["one", "two", "three"]
    assert logs.tail(2) == ["other job"]


def test_tail_n_gives_the_last_lines(logs: JobLogs) -> None:
    """tail with a count returns only that many of the newest lines."""
    logs.append(1, [f"line {i}" for i in range(10)])
    assert logs.tail(1, 3) == ["line 7", "line 8", "line 9"]
    assert logs.tail(1, 100) == [f"line {i}" for i in range(10)]
    assert logs.tail(1, 0) == []


def test_tail_of_missing_job_is_empty(logs: JobLogs) -> None:
    """A job that never logged has an empty log, not an error."""
    assert logs.tail(404) == []
    assert logs.tail(404, 5) == []


def test_lines_survive_reopening(logs: JobLogs, tmp_path: Path) -> None:
    """Another JobLogs on the same directory (a restarted supervisor) reads and extends a log."""
    logs.append(1, ["before"])
    logs.close(1)
    again = JobLogs(tmp_path / "logs", cap_bytes=CAP)
    again.append(1, ["after"])
    again.close_all()
    # (the job ran again: its new lines follow a separator)
    before, separator, after = again.tail(1)
    assert (before, after) == ("before", "after") and separator.startswith("--- attempt 1, ")


def test_unicode_and_empty_lines(logs: JobLogs) -> None:
    """Non-ASCII text and empty lines are kept as written."""
    logs.append(3, ["héllo ✓", "", "end"])
    assert logs.tail(3) == ["héllo ✓", "", "end"]


def test_cap_holds_and_keeps_the_end(logs: JobLogs) -> None:
    """A job that logs far more than the cap never takes more than the cap, and keeps its end."""
    written = []
    for i in range(2000):
        line = f"line {i:05d} " + "x" * (i % 70)
        written.append(line)
        logs.append(7, [line])
        assert _bytes_on_disk(logs, 7) <= CAP
    assert sum(len(w) + 1 for w in written) > 20 * CAP
    tail = logs.tail(7)
    assert tail[-5:] == written[-5:]
    assert logs.tail(7, 5) == written[-5:]
    # What is kept is an unbroken run of the newest lines, oldest first.
    assert tail == written[-len(tail) :]
    assert len(tail) > 10


def test_cap_with_batches(logs: JobLogs) -> None:
    """Large batches of lines are capped too, and the newest line is always kept."""
    last = ""
    for batch in range(50):
        lines = [f"batch {batch} line {i} " + "y" * 40 for i in range(30)]
        last = lines[-1]
        logs.append(8, lines)
        assert _bytes_on_disk(logs, 8) <= CAP
    assert logs.tail(8, 1) == [last]


def test_one_huge_append_keeps_its_end(logs: JobLogs) -> None:
    """A single write bigger than the cap keeps its last lines within the cap."""
    lines = [f"{i:06d} " + "z" * 50 for i in range(1000)]
    logs.append(9, lines)
    assert _bytes_on_disk(logs, 9) <= CAP
    assert logs.tail(9, 3) == lines[-3:]


def test_other_jobs_are_not_affected_by_the_cap(logs: JobLogs) -> None:
    """One noisy job's log rotation leaves another job's log whole."""
    logs.append(1, ["quiet"])
    for i in range(500):
        logs.append(2, [f"noise {i} " + "n" * 60])
    assert logs.tail(1) == ["quiet"]


def test_remove_deletes_both_files(logs: JobLogs) -> None:
    """Removing a job's log deletes the current and the rotated file."""
    for i in range(500):
        logs.append(5, [f"line {i} " + "r" * 60])
    current, rotated = logs.path(5), logs.directory / "5.log.1"
    assert current.exists() and rotated.exists()
    logs.remove(5)
    assert not current.exists() and not rotated.exists()
    assert logs.tail(5) == []
    logs.remove(5)  # removing again is harmless
    logs.append(5, ["fresh"])
    assert logs.tail(5) == ["fresh"]


def test_files_not_named_by_a_job_id_are_not_jobs(logs: JobLogs) -> None:
    """A stray file whose name str.isdigit() accepts but int() does not (a superscript
    two) is left out of the job ids on disk, not a crash of the clean-up."""
    logs.append(4, ["kept"])
    (logs.directory / "\u00b2.log").write_text("stray\n")
    (logs.directory / "notes.log").write_text("stray\n")
    assert logs.job_ids_on_disk() == {4}


def test_a_later_attempt_starts_with_a_separator_line(logs: JobLogs) -> None:
    """The first lines of attempt 2 follow a line naming it; followers get it too."""
    assert logs.append(1, ["first try"], attempt=1) == ["first try"]
    logs.close(1)  # the attempt ended
    written = logs.append(1, ["second try", "more"], attempt=2)
    logs.append(1, ["still the second"], attempt=2)
    assert written[0].startswith("--- attempt 2, ") and written[1:] == ["second try", "more"]
    tail = logs.tail(1)
    assert tail[0] == "first try" and tail[1] == written[0]
    assert tail[2:] == ["second try", "more", "still the second"]
    assert logs.tail(1, 2) == ["more", "still the second"]  # -n counts lines, as before


def test_a_rerun_after_earlier_output_is_separated_too(logs: JobLogs) -> None:
    """A job run again as attempt 1 (semctl retry, an interrupted attempt) after output
    of an earlier run gets a separator; a first attempt on its own gets none."""
    logs.append(1, ["run one"], attempt=1)
    logs.close(1)
    logs.append(1, ["run two"], attempt=1)
    assert [line.startswith("--- attempt 1, ") for line in logs.tail(1)] == [False, True, False]
    logs.append(2, ["only"], attempt=1)
    assert logs.tail(2) == ["only"]
