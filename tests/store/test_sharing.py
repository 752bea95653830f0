"""What a shared store adds for its nodes: a log book every node reads, and stop
requests from one node to the node running a job (a cancel made elsewhere).

On SQLite the supervisor keeps logs in files and runs every job itself: no log
book, and a stop request finds nothing to ask. On PostgreSQL both are in the
database; tests/store/test_postgres_nodes.py has them across two nodes.
"""

from __future__ import annotations

from collections.abc import Callable

from storekit import enqueue

from semantica.models import JobError, JobSpec, JobState
from semantica.supervisor.store import JobStore, LogBook

Spec = Callable[..., JobSpec]


def book_of(store: JobStore, backend: str) -> LogBook | None:
    """The store's log book; only a single-writer store has none."""
    book = store.log_book()
    assert (book is None) == (backend == "sqlite")
    return book


def test_log_lines_come_back_in_order_from_any_point(
    store: JobStore, backend: str, spec: Spec
) -> None:
    book = book_of(store, backend)
    if book is None:
        return
    [job] = enqueue(store, [spec()]).jobs
    assert not book.has_log(job.id)
    assert book.read_log(job.id) == ([], 0)
    book.append_log(job.id, ["one", "two"])
    book.append_log(job.id, ["three", "", "fünf \x1b[31m"])
    assert book.has_log(job.id)
    lines, newest = book.read_log(job.id)
    assert lines == ["one", "two", "three", "", "fünf \x1b[31m"]
    assert book.read_log(job.id, last=2)[0] == ["", "fünf \x1b[31m"]
    assert book.read_log(job.id, last=2)[1] == newest
    assert book.read_log(job.id, after=newest) == ([], newest)
    book.append_log(job.id, ["six"])
    assert book.read_log(job.id, after=newest)[0] == ["six"]


def test_logs_are_each_job_s_own_and_go_with_it(
    store: JobStore, backend: str, spec: Spec, clock: object
) -> None:
    book = book_of(store, backend)
    if book is None:
        return
    first, second = enqueue(store, [spec(), spec()]).jobs
    book.append_log(first.id, ["a"])
    book.append_log(second.id, ["b"])
    assert book.read_log(first.id)[0] == ["a"]
    assert book.read_log(second.id)[0] == ["b"]
    assert store.cancel_queued(first.id, "no")
    side = store.upkeep()
    try:
        assert side.delete_finished(before=float("inf")) == [first.id]
    finally:
        side.close()
    assert not book.has_log(first.id)
    assert book.read_log(second.id)[0] == ["b"]


def test_a_trimmed_log_keeps_its_end_within_the_bytes_asked(
    store: JobStore, backend: str, spec: Spec
) -> None:
    book = book_of(store, backend)
    if book is None:
        return
    [job] = enqueue(store, [spec()]).jobs
    book.append_log(job.id, [f"line {i:04}" for i in range(100)])  # 10 bytes each, newline too
    book.trim_log(job.id, 100)
    lines, _ = book.read_log(job.id)
    assert lines == [f"line {i:04}" for i in range(90, 100)]
    book.trim_log(job.id, 5)  # less than the newest line, which stays
    assert book.read_log(job.id)[0] == ["line 0099"]


def test_a_stop_request_reaches_the_running_job_s_node_until_it_ends(
    store: JobStore, backend: str, spec: Spec
) -> None:
    queued, running = enqueue(store, [spec(priority=0), spec(priority=9)]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == running.id
    error = JobError("cancelled", "cancelled on node b")
    assert store.request_stop(queued.id, error) is False  # not running: nothing to stop
    asked = store.request_stop(running.id, error)
    if backend == "sqlite":  # its supervisor runs every job and stops them itself
        assert asked is False
        assert store.stop_requests() == []
        return
    assert asked is True
    assert store.stop_requests() == [(running.id, error)]
    store.cancel_running(lease, error)
    assert store.state(running.id) == JobState.CANCELLED
    assert store.stop_requests() == []
    assert store.request_stop(running.id, error) is False


def test_a_stop_request_does_not_outlive_its_attempt(
    store: JobStore, backend: str, spec: Spec
) -> None:
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None
    if not store.request_stop(job.id, JobError("cancelled", "x")):
        assert backend == "sqlite"  # (no stop requests there: see the test above)
        return
    store.requeue_interrupted(lease, JobError("interrupted", "drain"))
    assert store.stop_requests() == []
    again = store.lease(worker_pid=1)
    assert again is not None and again.job_id == job.id
    assert store.stop_requests() == []  # the next attempt is not asked to stop
