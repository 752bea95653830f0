"""Jobs in a store: enqueue and its batches, reads, leases and delays, the ends of
attempts and their fencing, recovery after a crash, pages within a byte budget."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from storekit import enqueue

from semantica.clock import FakeClock
from semantica.errors import BadInput, NoSuchJob
from semantica.models import JobError, JobSpec, JobState
from semantica.supervisor.store import JobStore, StaleLease

BOOM = JobError(kind="exception", message="ValueError: boom")
Spec = Callable[..., JobSpec]


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# ---------------------------------------------------------------- enqueue and reads


def test_enqueue_returns_committed_jobs_with_increasing_ids(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """Enqueued jobs come back QUEUED with increasing ids, exactly as a later read shows them."""
    first = enqueue(
        store, [spec(payload={"n": 1}), spec("U", queue="q", subject="s", priority=4)]
    ).jobs
    second = enqueue(store, [spec(payload=[1, "two"])]).jobs
    jobs = first + second
    ids = [job.id for job in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 3
    for job in jobs:
        assert job.state == JobState.QUEUED
        assert job.attempts == 0
        assert job.created_at == _ts(clock.time())
        assert store.get(job.id) == job
    assert jobs[1].type == "U" and jobs[1].queue == "q" and jobs[1].subject == "s"
    assert jobs[2].payload == [1, "two"]


def test_get_unknown_id_raises_no_such_job(store: JobStore, spec: Spec) -> None:
    """Asking for a job id that does not exist raises NoSuchJob naming the id."""
    [job] = enqueue(store, [spec()]).jobs
    with pytest.raises(NoSuchJob, match=str(job.id + 1)):
        store.get(job.id + 1)
    with pytest.raises(NoSuchJob):
        store.get_many([job.id, job.id + 1])


def test_get_many_keeps_the_order_asked(store: JobStore, spec: Spec) -> None:
    """get_many returns the jobs in the order of the ids given."""
    a, b, c = enqueue(store, [spec(), spec(), spec()]).jobs
    assert [j.id for j in store.get_many([c.id, a.id, b.id])] == [c.id, a.id, b.id]
    assert store.get_many([]) == []


def test_states_reads_many_jobs_states_and_refuses_an_unknown_id(
    store: JobStore, spec: Spec
) -> None:
    """states() gives each job's state once; one unknown id among 600 is named."""
    jobs = enqueue(store, [spec() for _ in range(600)]).jobs
    lease = store.lease(1)
    assert lease is not None
    store.complete(lease, None)
    ids = [job.id for job in jobs]
    states = store.states([*ids, ids[0]])
    assert len(states) == 600 and states[lease.job_id] == JobState.DONE
    assert sum(state == JobState.QUEUED for state in states.values()) == 599
    unknown = ids[-1] + 1
    with pytest.raises(NoSuchJob, match=f"no job {unknown}"):
        store.states([*ids, unknown])


def test_next_queued_merges_the_queues_in_dispatch_order(store: JobStore, spec: Spec) -> None:
    """The waiting list of top: priority first, then oldest, whatever the queue."""
    jobs = enqueue(
        store,
        [
            spec(queue="a"),
            spec(queue="b", priority=5),
            spec(queue="a", priority=5),
            spec(queue="c"),
            spec(queue="b"),
        ],
    ).jobs
    lease = store.lease(1)  # takes the oldest of priority 5
    assert lease is not None and lease.job_id == jobs[1].id
    ids = [job.id for job in store.next_queued(3)]
    assert ids == [jobs[2].id, jobs[0].id, jobs[3].id]
    assert [job.id for job in store.next_queued(10)] == [*ids, jobs[4].id]


def test_next_startable_is_what_leases_would_take_in_their_order(
    store: JobStore, spec: Spec
) -> None:
    """top's "next in line": the jobs leases would take, in the order they would, skipping
    a paused queue, a full one and a delayed job; nothing is taken."""
    store.set_queue("held", paused=True)
    store.set_queue("one", limit=1)
    jobs = enqueue(
        store,
        [
            spec(queue="held", priority=9),  # paused
            spec(queue="one", priority=3),
            spec(queue="one", priority=3),  # its queue is full once the one before starts
            spec(priority=1),
            spec(priority=2, delay=60),  # not due
            spec(),
        ],
    ).jobs
    shown = [job.id for job in store.next_startable(10, 200)]
    assert shown == [jobs[1].id, jobs[3].id, jobs[5].id]
    assert store.counts()["QUEUED"] == 6  # a read
    taken = [lease.job_id for lease in store.lease_many(1, 10)]
    assert taken == shown


def test_rows_for_a_view_carry_no_payload_and_cut_long_texts(store: JobStore, spec: Spec) -> None:
    """top's rows: no payload nor result, and an error longer than the cut ends in "…"."""
    [job] = enqueue(store, [spec(payload={"blob": "x" * 10_000}, max_attempts=1)]).jobs
    lease = store.lease(1)
    assert lease is not None
    store.fail(lease, JobError("exception", "E" * 10_000), None)
    [row] = store.latest_rows("FAILED", 5, 200)
    assert row.id == job.id and row.payload is None and row.error is not None
    assert len(row.error.message) == 200 and row.error.message.endswith("\u2026")
    [queued] = enqueue(store, [spec(payload={"blob": "x" * 10_000})]).jobs
    assert [(j.id, j.payload) for j in store.next_queued(5, cut=200)] == [(queued.id, None)]


def test_a_large_mixed_batch_keeps_its_order_ids_and_payloads(store: JobStore, spec: Spec) -> None:
    """1,200 specs, every 100th with a subject: ids grow in spec order; each job is its spec."""
    specs = [
        spec(payload={"n": n}, subject=f"s{n % 3}" if n % 100 == 0 else None, delay=n % 2)
        for n in range(1200)
    ]
    result = enqueue(store, specs)
    ids = [job.id for job in result.jobs]
    assert ids == sorted(ids) and len(set(ids)) == 1200
    stored = store.get_many(ids)
    assert [job.payload for job in result.jobs] == [{"n": n} for n in range(1200)]
    assert [job.payload for job in stored] == [{"n": n} for n in range(1200)]
    assert [job.run_after for job in result.jobs] == [job.run_after for job in stored]
    assert [job.created_at for job in result.jobs] == [job.created_at for job in stored]
    # The subject rules saw the earlier specs of the batch: s0 at n=0 and n=300 ...
    superseded = [job for job in stored if job.state == JobState.SUPERSEDED]
    assert {job.subject for job in superseded} == {"s0", "s1", "s2"}
    assert all(job.superseded_by in ids for job in superseded)


#: Payloads whose JSON text a store might mangle on its way in: quotes, backslashes,
#: escapes, control characters, text beyond the BMP, nesting, numbers at their limits.
AWKWARD_PAYLOADS: list[Any] = [
    None,
    "plain",
    'say "hi" \\ back\\slash',
    "\u0000\u0001\n\t\u001f end",
    "caf\u00e9 \u2603 \U0001f600",
    {"path": 'src/"main".rs', "deep": [[[{"x": None}]]], "": ""},
    [1, -2, 2**63 - 1, -(2**63), 1.5e-300, 0.1, True, False],
    {},
    [],
    '{"not": "an object"}',
]


def test_runs_of_alike_jobs_keep_their_order_ids_and_payloads(store: JobStore, spec: Spec) -> None:
    """Long runs of jobs alike but for their payloads, between jobs unlike their
    neighbours: ids grow in spec order, each job as stored is its spec and as returned."""
    specs = []
    for block in range(6):
        # A run long enough to go in one statement, then a few odd ones.
        specs += [spec(payload=[block, n, AWKWARD_PAYLOADS[n % 10]]) for n in range(40)]
        specs += [spec(payload=AWKWARD_PAYLOADS[n], priority=n, delay=n) for n in range(block)]
        specs += [spec("U", queue="q2", payload=p) for p in AWKWARD_PAYLOADS]
    result = enqueue(store, specs)
    ids = [job.id for job in result.jobs]
    assert ids == sorted(ids) and len(set(ids)) == len(specs)
    stored = store.get_many(ids)
    assert result.jobs == stored
    for job, given in zip(stored, specs, strict=True):
        assert (job.type, job.queue, job.priority) == (given.type, given.queue, given.priority)
        assert job.payload == given.payload


def test_list_filters_newest_first(store: JobStore, spec: Spec) -> None:
    """list applies every filter given and returns the newest jobs first, up to the limit."""
    jobs = enqueue(
        store,
        [
            spec("A", queue="q1", subject="x"),
            spec("B", queue="q1", subject="y"),
            spec("A", queue="q2", subject="z"),
            spec("A", queue="q1", subject="w"),
            spec("B", queue="q2", subject="x"),
        ],
    ).jobs
    ids = [j.id for j in jobs]

    def listed(**filters: Any) -> list[int]:
        return [j.id for j in store.list(**filters)]

    assert listed() == ids[::-1]
    assert listed(limit=2) == [ids[4], ids[3]]
    assert listed(type="A") == [ids[3], ids[2], ids[0]]
    assert listed(queue="q1") == [ids[3], ids[1], ids[0]]
    assert listed(subject="x") == [ids[4], ids[0]]
    assert listed(type="A", queue="q1") == [ids[3], ids[0]]
    assert listed(type="A", queue="q1", subject="x") == [ids[0]]
    assert listed(type="A", queue="q1", limit=1) == [ids[3]]
    assert listed(type="C") == []
    lease = store.lease(worker_pid=1)
    assert lease is not None
    assert listed(state="RUNNING") == [lease.job_id]
    assert listed(state="QUEUED") == [i for i in ids[::-1] if i != lease.job_id]
    assert listed(state="DONE") == []


# ---------------------------------------------------------------- leases


def test_lease_order_is_priority_then_fifo(store: JobStore, spec: Spec) -> None:
    """Jobs start highest priority first, and in enqueue order within one priority."""
    jobs = enqueue(
        store,
        [
            spec(priority=0),
            spec(priority=5),
            spec(priority=-1),
            spec(priority=5),
            spec(priority=10),
        ],
    ).jobs
    order = []
    while (lease := store.lease(worker_pid=7)) is not None:
        order.append(lease.job_id)
    assert order == [jobs[4].id, jobs[1].id, jobs[3].id, jobs[0].id, jobs[2].id]


def test_lease_marks_the_job_running(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A leased job is RUNNING on that worker, with one attempt spent and a start time."""
    [job] = enqueue(
        store, [spec(payload={"k": "v"}, max_attempts=4, timeout=9.0, backoff=3.0)]
    ).jobs
    clock.advance(5)
    lease = store.lease(worker_pid=1234)
    assert lease is not None
    assert (lease.job_id, lease.type, lease.attempt, lease.max_attempts) == (job.id, "T", 1, 4)
    assert (lease.timeout, lease.backoff) == (9.0, 3.0)
    assert lease.payload == b'{"k":"v"}'
    running = store.get(job.id)
    assert running.state == JobState.RUNNING
    assert running.attempts == 1
    assert running.started_at == _ts(clock.time())
    assert running.worker_pid == 1234
    assert store.lease(worker_pid=1) is None


def test_lease_ids_are_distinct(store: JobStore, spec: Spec) -> None:
    """Every lease handed out has its own id, so a late message can be told apart."""
    enqueue(store, [spec(), spec(), spec()])
    leases = [store.lease(worker_pid=1) for _ in range(3)]
    assert len({lease.lease_id for lease in leases if lease is not None}) == 3


def test_delayed_job_is_not_leased_before_its_time(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job with a delay does not start until the clock reaches its run_after, then does."""
    start = clock.time()
    [job] = enqueue(store, [spec(delay=30.0)]).jobs
    assert job.run_after == _ts(start + 30)
    assert store.next_run_after() == start + 30
    assert store.lease(worker_pid=1) is None
    clock.advance(29.5)
    assert store.lease(worker_pid=1) is None
    assert store.next_run_after() == start + 30
    clock.advance(0.5)
    assert store.next_run_after() is None
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == job.id


def test_job_at_a_start_time(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A job given a start time (--at) waits until then."""
    at = clock.time() + 100
    [job] = enqueue(store, [spec(at=_ts(at))]).jobs
    assert job.run_after == _ts(at)
    assert store.next_run_after() == at
    clock.advance(99)
    assert store.lease(worker_pid=1) is None
    clock.advance(1)
    assert store.lease(worker_pid=1) is not None


def test_delayed_job_does_not_block_ready_ones(store: JobStore, spec: Spec) -> None:
    """A high-priority job that is not due yet lets lower-priority ready jobs start."""
    _delayed, ready = enqueue(store, [spec(priority=100, delay=60.0), spec(priority=-5)]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == ready.id


def test_next_run_after_is_the_earliest_future_time(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """next_run_after names the earliest delayed job, and None when nothing is delayed."""
    assert store.next_run_after() is None
    enqueue(store, [spec()])
    assert store.next_run_after() is None
    now = clock.time()
    enqueue(store, [spec(delay=50.0), spec(delay=20.0), spec(delay=80.0)])
    assert store.next_run_after() == now + 20


# ---------------------------------------------------------------- ends of attempts


def test_complete_sets_done_result_and_finish_time(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A completed job is DONE with its result and the time it finished."""
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    clock.advance(2.5)
    store.complete(lease, b'{"symbols":42}')
    done = store.get(job.id)
    assert done.state == JobState.DONE
    assert done.result == {"symbols": 42}
    assert done.finished_at == _ts(clock.time())
    assert done.error is None
    assert done.attempts == 1
    assert done.worker_pid is None
    assert store.lease(worker_pid=1) is None


def test_fail_with_retry_requeues_keeping_the_error(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A failed attempt with a retry time goes back to the queue until then, error kept."""
    [job] = enqueue(store, [spec(max_attempts=3)]).jobs
    first = store.lease(worker_pid=1)
    assert first is not None
    retry_at = clock.time() + 10
    assert store.fail(first, BOOM, retry_at) == JobState.QUEUED
    queued = store.get(job.id)
    assert queued.state == JobState.QUEUED
    assert queued.run_after == _ts(retry_at)
    assert queued.error == BOOM
    assert queued.attempts == 1
    assert queued.finished_at is None
    assert store.lease(worker_pid=1) is None
    clock.advance(10)
    second = store.lease(worker_pid=1)
    assert second is not None and second.attempt == 2
    assert store.get(job.id).error == BOOM  # kept while the retry runs
    store.complete(second, b"null")
    assert store.get(job.id).error is None
    assert store.get(job.id).attempts == 2


def test_fail_without_retry_is_final(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A failed attempt with no retry time leaves the job FAILED with its error."""
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    clock.advance(1)
    assert store.fail(lease, BOOM, None) == JobState.FAILED
    failed = store.get(job.id)
    assert failed.state == JobState.FAILED
    assert failed.error == BOOM
    assert failed.finished_at == _ts(clock.time())
    assert failed.attempts == 1
    assert store.lease(worker_pid=1) is None


def test_second_complete_with_same_lease_is_stale(store: JobStore, spec: Spec) -> None:
    """Reporting the same attempt twice raises StaleLease and changes nothing."""
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.complete(lease, b"1")
    before = store.get(job.id)
    with pytest.raises(StaleLease):
        store.complete(lease, b"2")
    with pytest.raises(StaleLease):
        store.fail(lease, BOOM, None)
    with pytest.raises(StaleLease):
        store.requeue_interrupted(lease, BOOM)
    assert store.get(job.id) == before


def test_old_lease_cannot_touch_the_retry(store: JobStore, spec: Spec, clock: FakeClock) -> None:
    """A late message about an earlier attempt does not end the attempt now running."""
    [job] = enqueue(store, [spec()]).jobs
    old = store.lease(worker_pid=1)
    assert old is not None
    store.fail(old, BOOM, clock.time())
    new = store.lease(worker_pid=2)
    assert new is not None and new.job_id == job.id
    before = store.get(job.id)
    for attempt in (
        lambda: store.complete(old, b"1"),
        lambda: store.fail(old, BOOM, None),
        lambda: store.fail(old, BOOM, clock.time()),
        lambda: store.requeue_interrupted(old, BOOM),
    ):
        with pytest.raises(StaleLease):
            attempt()
    assert store.get(job.id) == before
    store.complete(new, b"2")
    assert store.get(job.id).result == 2


def test_requeue_interrupted_gives_back_the_attempt(
    store: JobStore, spec: Spec, clock: FakeClock
) -> None:
    """A job stopped by a drain goes back to the queue at once without spending an attempt."""
    [job] = enqueue(store, [spec(max_attempts=1)]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    clock.advance(3)
    interrupted = JobError(kind="interrupted", message="drained")
    store.requeue_interrupted(lease, interrupted)
    queued = store.get(job.id)
    assert queued.state == JobState.QUEUED
    assert queued.attempts == 0
    assert queued.run_after == _ts(clock.time())
    assert queued.error == interrupted
    again = store.lease(worker_pid=1)
    assert again is not None and again.attempt == 1


def test_recover_running_after_restart(
    open_store: Callable[[], JobStore], clock: FakeClock, spec: Spec
) -> None:
    """Jobs running when the supervisor died are queued again on the next start, attempts kept."""
    store = open_store()
    a, b, c = enqueue(store, [spec(), spec(), spec()]).jobs
    la = store.lease(worker_pid=1)
    lb = store.lease(worker_pid=2)
    assert la is not None and lb is not None
    store.close()  # the supervisor "dies" here with two jobs RUNNING

    clock.advance(60)
    store = open_store()
    try:
        assert store.get(a.id).state == JobState.RUNNING
        assert store.recover_running() == 2
        assert store.recover_running() == 0
        for job_id in (a.id, b.id):
            job = store.get(job_id)
            assert job.state == JobState.QUEUED
            assert job.attempts == 0
            assert job.run_after == _ts(clock.time())
            assert job.error is not None and job.error.kind == "interrupted"
        assert store.get(c.id).state == JobState.QUEUED
        # The old leases are stale: a message from a worker of the dead supervisor changes nothing.
        with pytest.raises(StaleLease):
            store.complete(la, b"1")
        relet = store.lease(worker_pid=3)
        assert relet is not None and relet.job_id == a.id and relet.attempt == 1
        assert relet.lease_id > max(la.lease_id, lb.lease_id)
        with pytest.raises(StaleLease):
            store.complete(la, b"1")
    finally:
        store.close()


def test_counts_cover_every_state(store: JobStore, spec: Spec) -> None:
    """counts lists every state, zeros included, with the right numbers."""
    assert store.counts() == {state.value: 0 for state in JobState}
    enqueue(store, [spec() for _ in range(5)])
    done, failed, running = (store.lease(worker_pid=1) for _ in range(3))
    assert done is not None and failed is not None and running is not None
    store.complete(done, None)
    store.fail(failed, BOOM, None)
    assert store.counts() == {
        "QUEUED": 2,
        "RUNNING": 1,
        "DONE": 1,
        "FAILED": 1,
        "CANCELLED": 0,
        "SUPERSEDED": 0,
    }


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad",
    [
        JobSpec(type="T", priority=5000),
        JobSpec(type=""),
        JobSpec(type="T", payload=object()),
        JobSpec(type="T", payload={"when": object()}),
    ],
    ids=["bad priority", "empty type", "object payload", "nested object payload"],
)
def test_bad_spec_in_a_batch_inserts_nothing(store: JobStore, spec: Spec, bad: JobSpec) -> None:
    """A batch whose last spec is bad is refused whole: no job of it is inserted."""
    with pytest.raises(BadInput):
        enqueue(store, [spec(), spec(), bad])
    assert store.counts() == {state.value: 0 for state in JobState}
    assert store.list() == []
    assert store.lease(worker_pid=1) is None


def test_non_json_payload_error_names_the_payload(store: JobStore, spec: Spec) -> None:
    """A payload that is not JSON is refused with a reason that says so."""
    with pytest.raises(BadInput, match="payload"):
        enqueue(store, [spec(payload=object())])


def test_payload_comes_back_as_stored(store: JobStore, spec: Spec) -> None:
    """A payload is stored as JSON, and the job returned by enqueue shows it as stored."""
    [job] = enqueue(store, [spec(payload={"tags": (1, 2.5, None)})]).jobs
    assert job.payload == {"tags": [1, 2.5, None]}
    assert store.get(job.id).payload == {"tags": [1, 2.5, None]}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"tags": {1}}, "set values are not"),
        ({"x": float("nan")}, "finite"),
        ([float("inf")], "finite"),
        (b"\xff", "bytes values are not"),
        ({(1, 2): "pair"}, "keys must be strings"),
        ({"n": 2**64}, "64 bits"),
        (functools.reduce(lambda inner, _: [inner], range(300), []), "nested more than"),
    ],
    ids=["set", "nan", "inf", "bytes", "tuple key", "big int", "deep"],
)
def test_a_payload_that_would_not_come_back_as_sent_is_refused(
    store: JobStore, spec: Spec, payload: Any, reason: str
) -> None:
    """NaN would be stored as null, bytes as base64, a set as a list: refused, nothing stored."""
    with pytest.raises(BadInput, match=reason):
        enqueue(store, [spec(), spec(payload=payload)])
    assert sum(store.counts().values()) == 0


# ---------------------------------------------------------------- reopening


def test_reopen_keeps_jobs_and_version(open_store: Callable[[], JobStore], spec: Spec) -> None:
    """Opening an existing database again keeps its jobs and does not re-run migrations."""
    store = open_store()
    [job] = enqueue(store, [spec(payload={"a": 1})]).jobs
    version = store.schema_version
    store.close()
    store = open_store()
    try:
        assert store.schema_version == version
        assert store.get(job.id) == job
    finally:
        store.close()


def test_jobs_ended_in_one_batch_keep_the_order_they_started_in(
    store: JobStore, clock: FakeClock, spec: Callable[..., JobSpec]
) -> None:
    """Jobs handed over together start one after another: started_at says when each did."""
    enqueue(store, [spec(), spec(), spec()])
    leased_at = clock.time()
    first, second, third = store.lease_many(7, 3)
    clock.advance(1.0)
    store.complete_many(
        [(first, None, leased_at + 0.2), (second, None, leased_at + 0.5), (third, None, 0.0)]
    )
    jobs = store.get_many([first.job_id, second.job_id, third.job_id])
    starts = [job.started_at.timestamp() for job in jobs if job.started_at is not None]
    assert starts[0] == pytest.approx(leased_at + 0.2)
    assert starts[1] == pytest.approx(leased_at + 0.5)
    assert starts[2] == pytest.approx(leased_at, abs=1e-5)  # not known: when it was leased
    assert all(job.state == JobState.DONE for job in jobs)


def test_one_end_recorded_alone_takes_the_start_the_worker_reported(
    store: JobStore, clock: FakeClock, spec: Callable[..., JobSpec]
) -> None:
    """complete() (a dead worker's last report, say) corrects started_at as a batch does."""
    enqueue(store, [spec()])
    leased_at = clock.time()
    lease = store.lease(7)
    assert lease is not None
    clock.advance(1.0)
    store.complete(lease, b'{"ok": true}', leased_at + 0.4)
    job = store.get(lease.job_id)
    assert job.state == JobState.DONE and job.result == {"ok": True}
    assert job.started_at is not None
    assert job.started_at.timestamp() == pytest.approx(leased_at + 0.4)
    with pytest.raises(StaleLease):
        store.complete(lease, None)


# ---------------------------------------------------------------- pages within a byte budget


def test_list_page_stops_at_its_budget_and_the_next_page_goes_on(
    store: JobStore, spec: Spec
) -> None:
    """A page holds the jobs that fit in its budget (at least one) and says more; the next
    page, from the last id, goes on; count counts every match."""
    ids = [job.id for job in enqueue(store, [spec(payload="p" * 1000)] * 10).jobs]
    enqueue(store, [spec("OTHER")])
    seen: list[int] = []
    before = None
    while True:
        page = store.list_page(type="T", limit=10, before=before, budget=2500)
        seen += [job.id for job in page.jobs]
        assert 1 <= len(page.jobs) <= 2
        if not page.more:
            break
        before = page.jobs[-1].id
    assert seen == ids[::-1]
    assert store.list_page(type="T", budget=10).jobs == store.list(type="T", limit=1)
    assert store.list_page(type="T", limit=10).more is False
    assert store.count(type="T") == 10 and store.count() == 11
    assert store.count(type="T", state="DONE") == 0


def test_get_page_keeps_the_order_asked_within_its_budget(store: JobStore, spec: Spec) -> None:
    ids = [job.id for job in enqueue(store, [spec(payload="p" * 1000)] * 200).jobs]
    asked = ids[::-1] + ids[:1]
    got: list[int] = []
    while len(got) < len(asked):
        page = store.get_page(asked[len(got) :], budget=50_000)
        assert page.jobs and page.more == (len(got) + len(page.jobs) < len(asked))
        got += [job.id for job in page.jobs]
    assert got == asked
    with pytest.raises(NoSuchJob):
        store.get_page([ids[0], ids[-1] + 1], budget=50_000)
