"""Jobs that finished on another node: the waiters here are told, with one read of the
store however many jobs they wait for (a lookup per job held the event loop for
seconds when a client waited for thousands)."""

from __future__ import annotations

from collections.abc import Iterable

from semantica.errors import NoSuchJob
from semantica.models import JobState
from semantica.supervisor.cluster import finished_elsewhere
from semantica.supervisor.events import JobEvents


class _States:
    """The reads finished_elsewhere makes, counted."""

    def __init__(self, states: dict[int, JobState]) -> None:
        self.known = states
        self.reads = 0

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        self.reads += 1
        wanted = list(job_ids)
        missing = [job_id for job_id in wanted if job_id not in self.known]
        if missing:
            raise NoSuchJob(f"no job {missing[0]}")
        return {job_id: self.known[job_id] for job_id in wanted}

    def state(self, job_id: int) -> JobState:
        self.reads += 1
        if job_id not in self.known:
            raise NoSuchJob(f"no job {job_id}")
        return self.known[job_id]


def test_waiters_of_many_jobs_cost_one_read() -> None:
    events = JobEvents()
    states = {n: JobState.DONE if n % 2 else JobState.RUNNING for n in range(1, 1001)}
    odd = events.all_finished({job_id for job_id in states if job_id % 2})
    even = events.all_finished({job_id for job_id in states if not job_id % 2})
    store = _States(states)
    finished_elsewhere(store, events)  # type: ignore[arg-type]  # (a stand-in: only the reads it makes)
    assert store.reads == 1
    assert odd.is_set() and not even.is_set()
    assert events.pending() == {job_id for job_id in states if not job_id % 2}


def test_a_job_deleted_meanwhile_counts_as_finished() -> None:
    events = JobEvents()
    done = events.all_finished({1, 2})
    store = _States({1: JobState.CANCELLED})
    finished_elsewhere(store, events)  # type: ignore[arg-type]  # (a stand-in: only the reads it makes)
    assert done.is_set() and events.pending() == set()


def test_nothing_waited_for_reads_nothing() -> None:
    store = _States({})
    finished_elsewhere(store, JobEvents())  # type: ignore[arg-type]  # (a stand-in: only the reads it makes)
    assert store.reads == 0
