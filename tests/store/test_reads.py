"""Reads the other tests of the suite leave out: counting with a cap, lists from a job on,
pages without a budget, and the rows of a view in every state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storekit import BOOM, enqueue

from semantica.errors import NoSuchJob
from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore

Spec = Callable[..., JobSpec]


def test_count_stops_at_its_cap(store: JobStore, spec: Spec) -> None:
    """count with a cap: the number of matches, or the cap if there are more."""
    enqueue(store, [spec() for _ in range(7)] + [spec("U", queue="q") for _ in range(3)])
    assert store.count() == 10
    assert store.count(cap=4) == 4
    assert store.count(cap=10) == store.count(cap=50) == 10
    assert store.count(type="U", cap=2) == 2
    assert store.count(queue="q", cap=5) == 3
    assert store.count(state="QUEUED", type="T", queue="default", cap=100) == 7
    assert store.count(state="DONE", cap=1) == 0


def test_list_before_a_job_goes_on_from_it(store: JobStore, spec: Spec) -> None:
    """list(before=id): the jobs with lower ids, newest first, with the other filters."""
    ids = [job.id for job in enqueue(store, [spec(), spec("U"), spec(), spec("U")]).jobs]
    assert [job.id for job in store.list(before=ids[2])] == [ids[1], ids[0]]
    assert [job.id for job in store.list(before=ids[3], type="U")] == [ids[1]]
    assert [job.id for job in store.list(before=ids[0])] == []
    assert [job.id for job in store.list(before=ids[3] + 100, limit=2)] == [ids[3], ids[2]]


def test_pages_without_a_budget_hold_everything(store: JobStore, spec: Spec) -> None:
    """get_page and list_page with no budget: every job asked, and no more to come."""
    ids = [job.id for job in enqueue(store, [spec(payload="p" * 5000)] * 50).jobs]
    page = store.get_page([*ids, ids[0]], None)
    assert [job.id for job in page.jobs] == [*ids, ids[0]] and page.more is False
    listed = store.list_page(limit=100)
    assert [job.id for job in listed.jobs] == ids[::-1] and listed.more is False
    assert store.get_page([], None).jobs == []
    with pytest.raises(NoSuchJob):
        store.get_page([ids[-1] + 1], None)


def test_states_of_no_job_and_of_one_asked_twice(store: JobStore, spec: Spec) -> None:
    [job] = enqueue(store, [spec()]).jobs
    assert store.states([]) == {}
    assert store.states([job.id, job.id]) == {job.id: JobState.QUEUED}
    assert [j.id for j in store.get_many([job.id, job.id])] == [job.id, job.id]
    with pytest.raises(NoSuchJob):
        store.state(job.id + 1)


def test_latest_rows_of_each_state_newest_first(store: JobStore, spec: Spec) -> None:
    """latest_rows(state): the newest jobs in that state only, newest first, at most limit."""
    jobs = enqueue(store, [spec() for _ in range(5)]).jobs
    done, failed = store.lease_many(1, 2)
    store.complete(done, b'"result"')
    store.fail(failed, BOOM, None)
    assert [job.id for job in store.latest_rows("DONE", 5, 100)] == [done.job_id]
    assert [job.id for job in store.latest_rows("FAILED", 5, 100)] == [failed.job_id]
    assert [job.id for job in store.latest_rows("QUEUED", 2, 100)] == [jobs[4].id, jobs[3].id]
    assert store.latest_rows("RUNNING", 5, 100) == []
    [row] = store.latest_rows("DONE", 1, 100)
    assert row.result is None and row.payload is None  # a row for a view: no bodies
