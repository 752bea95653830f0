"""Reads the other tests of the suite leave out: counting with a cap, lists from a job on,
pages without a budget, and the rows of a view in every state."""

from __future__ import annotations

import itertools
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


def test_a_page_names_a_missing_job_wherever_it_is_asked(store: JobStore, spec: Spec) -> None:
    """get_page raises NoSuchJob for an id that names no job, first among those asked, in
    the page, or past the jobs that fit it (whose rows it does not read)."""
    ids = [job.id for job in enqueue(store, [spec(payload="p" * 5000)] * 6).jobs]
    missing = ids[-1] + 1
    budget = 12_000  # two of these jobs a page
    page = store.get_page(ids, budget)
    assert [job.id for job in page.jobs] == ids[:2] and page.more is True
    for asked in ([missing, *ids], [ids[0], missing, *ids[1:]], [*ids, missing]):
        with pytest.raises(NoSuchJob, match=str(missing)):
            store.get_page(asked, budget)


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


def _mixed_jobs(store: JobStore, spec: Spec) -> list[int]:
    """Jobs of three types, with subjects, in three queues, in five states, ids
    interleaved: each (state, queue) pair holds jobs old and new. Their ids."""
    specs = [
        spec(("T", "U", "V")[n % 3], queue=("a", "b", "c")[n % 5 % 3], subject=f"s{n % 20}")
        for n in range(60)
    ]
    ids = [job.id for job in enqueue(store, specs).jobs]
    for n, job_id in enumerate(ids):
        if n % 7 == 0:
            assert store.cancel_queued(job_id, "gone")
    leases = store.lease_many(1, 30)
    for n, lease in enumerate(leases):
        if n % 3 == 0:
            store.complete(lease, None)
        elif n % 3 == 1:
            store.fail(lease, BOOM, None)  # (max_attempts 3: some are retried, QUEUED)
    return ids


def test_lists_by_any_filters_are_the_newest_matches(store: JobStore, spec: Spec) -> None:
    """list by every combination of state, queue, type and subject, and from a job on:
    the newest matches, newest first, whatever index the store reads them from; count
    and latest_rows agree."""
    ids = _mixed_jobs(store, spec)
    every = store.get_many(ids)
    assert len({job.state for job in every}) >= 4
    values = {"state": "QUEUED", "queue": "b", "type": "U", "subject": "s1"}
    values_too = {"state": "RUNNING", "queue": "a", "type": "T", "subject": "s2"}
    for size in range(5):
        for names in itertools.combinations(values, size):
            for chosen in (values, values_too):
                filters = {name: chosen[name] for name in names}
                wanted = [
                    job.id
                    for job in sorted(every, key=lambda job: -job.id)
                    if all(
                        str(getattr(job, k).value if k == "state" else getattr(job, k)) == v
                        for k, v in filters.items()
                    )
                ]
                assert store.count(**filters) == len(wanted), filters
                assert store.count(**filters, cap=3) == min(3, len(wanted)), filters
                for limit in (1, 4, 100):
                    got = [job.id for job in store.list(**filters, limit=limit)]
                    assert got == wanted[:limit], (filters, limit)
                    if len(wanted) > 2:
                        later = store.list(**filters, limit=limit, before=wanted[1])
                        assert [job.id for job in later] == wanted[2 : 2 + limit], filters
    for state in JobState:
        newest = [job.id for job in sorted(every, key=lambda job: -job.id) if job.state is state]
        assert [job.id for job in store.latest_rows(state.value, 3, 100)] == newest[:3]
