"""`semctl top` against a real supervisor: what is next in line, rates, a bounded reply."""

from __future__ import annotations

import msgspec
from harness import Announcements, Daemon


def _busy_workers(daemon: Daemon, announcements: Announcements) -> list[int]:
    """Both workers run a job that waits (cancellable): nothing else starts meanwhile."""
    payload = {"notify": str(announcements.path)}
    with daemon.client() as client:
        ids = [client.enqueue("ASYNC_HANG", payload).id for _ in range(daemon.workers)]
    for _ in ids:
        announcements.next()
    return ids


def test_next_in_line_is_the_start_order_then_the_blocked_with_their_reason(
    daemon: Daemon, announcements: Announcements
) -> None:
    """With every worker busy: a paused queue full of high-priority jobs and a delayed job
    of higher priority still, and three jobs that may start. "next in line" lists the
    three first, in the order they will start (priority, then first in), then the blocked
    ones, each with its reason (it used to list the paused ones alone, by lowest id)."""
    hanging = _busy_workers(daemon, announcements)
    with daemon.client() as client:
        client.pause("held")
        held = [client.enqueue("NOOP", queue="held", priority=10).id for _ in range(12)]
        later = client.enqueue("NOOP", priority=100, delay=600).id
        a = client.enqueue("NOOP", queue="other").id
        b = client.enqueue("NOOP", priority=5).id
        c = client.enqueue("NOOP").id
        top = client.top()
        client.cancel(*hanging)
    waiting = [(job.id, job.waiting_for) for job in top.waiting]
    assert waiting[:3] == [(b, None), (a, None), (c, None)]
    assert waiting[3] == (later, "run_after")
    assert waiting[4:] == [(job_id, "queue_paused") for job_id in held[: len(waiting) - 4]]
    assert len(waiting) > 4


def test_top_once_shows_next_in_line_and_the_queue_counts(
    daemon: Daemon, announcements: Announcements
) -> None:
    """The drawn frame: the job that may start is listed before the paused queue's job
    (of higher priority), the queues table has a CANCELLED column, and the workers'
    progress column says PROGRESS (it said DONE)."""
    hanging = _busy_workers(daemon, announcements)
    with daemon.client() as client:
        client.pause("held")
        held = client.enqueue("NOOP", queue="held", priority=10).id
        client.cancel(client.enqueue("NOOP", queue="gone").id)
        ready = client.enqueue("[red]MARKUP", {"message": "x"}).id
    try:
        lines = daemon.semctl("top", "--once").out.splitlines()
        header = next(line for line in lines if line.startswith("QUEUE")).split()
        assert "CANCELLED" in header, lines
        gone = next(line for line in lines if line.startswith("gone")).split()
        assert gone[header.index("CANCELLED")] == "1"
        workers = next(line for line in lines if line.split()[:1] in (["WORKER"], ["PID"]))
        assert "PROGRESS" in workers.split() and "DONE" not in workers.split()
        first = next(i for i, line in enumerate(lines) if line.startswith(f"{ready} "))
        second = next(i for i, line in enumerate(lines) if line.startswith(f"{held} "))
        assert first < second, lines
    finally:
        with daemon.client() as client:
            client.cancel(*hanging)


def test_top_counts_enqueues_finishes_and_failures_over_the_last_minute(daemon: Daemon) -> None:
    """The rates behind the header: 4 jobs enqueued, 4 finished, 1 of them FAILED."""
    with daemon.client() as client:
        ids = [client.enqueue("NOOP").id for _ in range(3)]
        ids.append(client.enqueue("FAIL", max_attempts=1).id)
        client.wait_many(ids, timeout=60)
        top = client.top()
    assert (top.enqueued_60s, top.finished_60s, top.failed_60s) == (4, 4, 1)
    assert top.enqueued_10s <= 4 and top.failed_10s <= 1
    header = daemon.semctl("top", "--once").out.splitlines()[1]
    assert "enqueued" in header and "failed" in header, header


def test_the_top_reply_stays_small_whatever_the_jobs_hold(daemon: Daemon) -> None:
    """Five failures with 400 KB errors and ten paused jobs with 400 KB payloads and long
    subjects: the reply stays under 64 KB (it carried every byte: 8 MB), and top draws."""
    big = "x" * 400_000
    with daemon.client() as client:
        failed = [client.enqueue("FAIL", {"message": big}, max_attempts=1).id for _ in range(5)]
        client.wait_many(failed, timeout=60)
        client.pause("held")
        for i in range(10):
            client.enqueue("NOOP", {"blob": big}, queue="held", subject=f"{i}" + "s" * 4000)
        top = client.top()
    assert len(msgspec.msgpack.encode(top)) < 64_000
    assert len(top.failures) == 5 and len(top.waiting) == 10
    assert all(job.error is not None and job.error.message.endswith("…") for job in top.failures)
    assert all(job.payload is None and job.subject is not None for job in top.waiting)
    assert all(job.waiting_for == "queue_paused" for job in top.waiting)
    result = daemon.semctl("top", "--once")
    assert result.code == 0 and len(result.out) < 64_000, result.err
