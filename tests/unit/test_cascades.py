"""What the lifecycle does with the jobs a dependency's end cancelled: it tells of each
(log, waiters, counters, watchers) reading them from the store in pieces, not one by
one (a cancel whose cascade reached 100,000 jobs held the supervisor's loop 13 s)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from semantica.models import Job, JobSpec, JobState
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
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
