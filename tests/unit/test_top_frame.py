"""`semctl top`'s frame, drawn from a made-up reply onto consoles of a given size."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from semantica.control.top import frame
from semantica.models import Job, JobError, JobState, QueueInfo
from semantica.protocol import TopReply, WorkerTop


def _job(job_id: int, **fields: Any) -> Job:
    base: dict[str, Any] = {
        "id": job_id,
        "type": "INDEX_FILE_WITH_A_RATHER_LONG_NAME",
        "queue": "default",
        "subject": None,
        "generation": None,
        "priority": 0,
        "state": JobState.QUEUED,
        "attempts": 0,
        "max_attempts": 3,
        "created_at": datetime.now(UTC),
        "started_at": None,
        "finished_at": None,
        "run_after": None,
    }
    return Job(**(base | fields))


def _reply(workers: int = 16) -> TopReply:
    counts = {"QUEUED": 1234, "RUNNING": 2, "DONE": 100_000, "FAILED": 3, "CANCELLED": 7}
    names = ["default", "held", "gpu", "q" * 64, *(f"queue{i}" for i in range(20))]
    return TopReply(
        version="0.1.0",
        uptime_s=3723,
        workers=[
            WorkerTop(
                pid=1000 + i,
                state="busy" if i % 2 else "idle",
                job=i if i % 2 else None,
                job_type="T" * 200 if i % 2 else None,
                running_s=12.5 if i % 2 else None,
                cpu_percent=99.5,
                rss_bytes=30_000_000,
                progress=0.5 if i == 1 else None,
            )
            for i in range(workers)
        ],
        queues=[QueueInfo(name=n, paused=n == "held", counts=counts) for n in names],
        queues_total=len(names),
        finished_10s=12,
        finished_60s=80,
        enqueued_10s=20,
        enqueued_60s=100,
        failed_10s=1,
        failed_60s=5,
        supervisor_cpu_percent=3.2,
        supervisor_rss_bytes=50_000_000,
        failures=[
            _job(900 + i, state=JobState.FAILED, error=JobError("exception", "E" * 200))
            for i in range(5)
        ],
        waiting=[_job(i, priority=5) for i in range(10)]
        + [_job(100 + i, queue="held", waiting_for="queue_paused") for i in range(10)],
        draining=True,
    )


def _draw(top: TopReply, width: int, height: int) -> list[str]:
    """The lines a terminal of that size shows (no colours)."""
    out = io.StringIO()
    Console(file=out, width=width, height=height, color_system=None).print(frame(top, height))
    return out.getvalue().splitlines()


def test_a_busy_engine_fits_80_by_24_and_every_section_shows() -> None:
    """16 workers, 24 queues, 20 jobs in line and 5 failures on an 80x24 terminal: the
    frame fits, and each section shows its header, some rows, and how many it left out."""
    lines = _draw(_reply(), 80, 24)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    assert lines[0].startswith("semanticad 0.1.0")
    assert "enqueued 2.0 | 1.7" in lines[1] and "failed 0.1 | 0.1" in lines[1]
    assert "draining" in lines[2]
    for header in ("WORKER", "QUEUE", "NEXT JOB", "FAILED JOB"):
        at = next(i for i, line in enumerate(lines) if line.startswith(header))
        assert lines[at + 1][:1].isalnum(), (header, text)  # at least one row
    assert "1000" in text and "default" in text and "900" in text
    assert text.count("more") == 4  # workers, queues, next in line, failures were cut
    workers = next(line for line in lines if line.startswith("WORKER")).split()
    assert "PROGRESS" in workers and "DONE" not in workers
    queues = next(line for line in lines if line.startswith("QUEUE")).split()
    assert queues[-5:] == ["QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED"]


def test_long_names_and_errors_end_in_an_ellipsis_instead_of_wrapping() -> None:
    """A 200-character type and error cost one line each, cut with an ellipsis."""
    lines = _draw(_reply(workers=2), 80, 60)
    assert max(len(line) for line in lines) <= 80
    worker = next(line for line in lines if line.startswith("1001"))
    assert "T…" in worker or "…" in worker
    failure = next(line for line in lines if line.startswith("900"))
    assert failure.rstrip().endswith("…")


def test_a_tall_terminal_shows_everything() -> None:
    lines = _draw(_reply(workers=4), 120, 200)
    text = "\n".join(lines)
    assert "more" not in text
    assert all(f"{1000 + i}" in text for i in range(4))
    assert all(f"\n{100 + i} " in text for i in range(10))


def test_states_have_their_colours() -> None:
    """Queue count headers in their state's colour, busy workers in RUNNING's, paused queues
    and failed rates stand out."""
    console = Console(width=120, height=80, color_system="standard")
    styles: dict[str, set[str]] = {}
    for segment in console.render(frame(_reply(workers=2), 80)):
        if segment.style is not None and segment.style.color is not None:
            styles.setdefault(segment.text.strip(), set()).add(segment.style.color.name)
    assert styles["FAILED"] == {"red"} and styles["QUEUED"] == {"cyan"}
    assert styles["CANCELLED"] == {"magenta"} and styles["DONE"] == {"green"}
    assert styles["busy"] == {"yellow"} and styles["yes"] == {"yellow"}


def test_a_job_waiting_on_dependencies_names_them() -> None:
    """``WAITING FOR`` says which jobs a job waits for, as ``show`` does: one, two, or
    the first two and how many more (the column stays narrow); the frame still fits."""
    top = _reply(workers=2)
    top.waiting = [
        _job(7, waiting_for="dependency", waiting_on=[5]),
        _job(8, waiting_for="dependency", waiting_on=[5, 6]),
        _job(9, waiting_for="dependency", waiting_on=[5, 6, 7, 1234567]),
    ]
    lines = _draw(top, 80, 24)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80, "\n".join(lines)
    at = next(i for i, line in enumerate(lines) if line.startswith("NEXT JOB"))
    assert [line.split(None, 4)[-1].strip() for line in lines[at + 1 : at + 4]] == [
        "job 5",
        "jobs 5, 6",
        "jobs 5, 6 +2",
    ]
