"""What the lifecycle does with the jobs a dependency's end cancelled: it tells of each
(log, waiters, counters, watchers) reading them from the store in pieces, not one by
one (a cancel whose cascade reached 100,000 jobs held the supervisor's loop 13 s)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import structlog

from semantica.models import Job, JobSpec, JobState
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import CASCADE_LOGGED, JobLifecycle
from semantica.supervisor.metrics import Metrics
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import prepare
from semantica.supervisor.store.graph import plan
from semantica.supervisor.store.sqlite import SQLiteStore


class CountingStore(SQLiteStore):
    """The SQLite store, counting the reads of jobs by id."""

    reads = 0

    def get(self, job_id: int) -> Job:
        self.reads += 1
        return super().get(job_id)

    def get_many(self, job_ids: Iterable[int]) -> list[Job]:
        self.reads += 1
        return super().get_many(job_ids)


async def test_the_jobs_a_cancel_cascades_to_are_read_in_pieces(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "semantica.db")
    metrics = Metrics(lambda: {}, lambda: {})
    jobs = JobLifecycle(
        store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store), metrics=metrics
    )
    [head] = store.insert(prepare([JobSpec(type="T")])).jobs
    store.insert(plan(prepare([JobSpec(type="W", after=[head.id]) for _ in range(2000)])).prepared)
    store.reads = 0
    assert jobs.cancel_queued(head.id)
    assert store.reads <= 10  # (it was 2,001: one read a job)
    assert metrics._dependency_failed == 2000
    assert metrics._finished[("W", JobState.CANCELLED.value)] == 2000
    store.close()


async def test_a_big_cascade_logs_its_first_jobs_and_then_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,000 jobs cancelled by one end: a line for each of the first CASCADE_LOGGED, then
    one line for the rest (a line each held the loop for seconds at 100,000)."""
    store = SQLiteStore(tmp_path / "semantica.db")
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store))
    [head] = store.insert(prepare([JobSpec(type="T")])).jobs
    store.insert(plan(prepare([JobSpec(type="W", after=[head.id]) for _ in range(2000)])).prepared)
    with structlog.testing.capture_logs() as logs:
        assert jobs.cancel_queued(head.id)
    cascaded = [e for e in logs if e["event"] == "job cancelled" and e["job_id"] != head.id]
    assert len(cascaded) == CASCADE_LOGGED
    [rest] = [e for e in logs if e["event"] == "more jobs cancelled"]
    assert rest["count"] == 2000 - CASCADE_LOGGED and rest["error_kind"] == "dependency_failed"
    store.close()
