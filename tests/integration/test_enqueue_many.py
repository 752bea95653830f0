"""enqueue_many of any size, against the real supervisor, from Client and AsyncClient.

The client splits the jobs into requests under the frame cap by encoded size,
sends them in order, a few in flight (each one transaction), and when one fails
after others were committed raises PartialEnqueue with the committed jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio
from harness import Daemon

from semantica import AsyncClient, BadInput, Job, JobState, PartialEnqueue
from semantica.control.client import make_spec
from semantica.protocol import Enqueue, Enqueued

pytestmark = pytest.mark.slow

LATER = {"delay": 3600}  # queued jobs that do not run while the test looks at them
#: A small frame cap, so that a few hundred jobs make several requests.
SMALL_CAP = 16384


def enqueue_many_sync(daemon: Daemon, jobs: list[dict[str, Any]]) -> list[Job]:
    with daemon.client() as client:
        return client.enqueue_many(jobs)


async def _enqueue_many_async(daemon: Daemon, jobs: list[dict[str, Any]]) -> list[Job]:
    async with AsyncClient(home=daemon.home) as client:
        return await client.enqueue_many(iter(jobs))  # any iterable will do


def enqueue_many_asyncio(daemon: Daemon, jobs: list[dict[str, Any]]) -> list[Job]:
    return asyncio.run(_enqueue_many_async(daemon, jobs))


def enqueue_many_trio(daemon: Daemon, jobs: list[dict[str, Any]]) -> list[Job]:
    return trio.run(_enqueue_many_async, daemon, jobs)


CLIENTS = pytest.mark.parametrize(
    "enqueue_many",
    [enqueue_many_sync, enqueue_many_asyncio, enqueue_many_trio],
    ids=["Client", "AsyncClient-asyncio", "AsyncClient-trio"],
)
EnqueueMany = Callable[[Daemon, list[dict[str, Any]]], list[Job]]


def queued(daemon: Daemon) -> int:
    with daemon.client() as client:
        return client.status().counts[JobState.QUEUED]


@CLIENTS
def test_100_000_jobs_in_one_call(daemon: Daemon, enqueue_many: EnqueueMany) -> None:
    """100,000 jobs (several times the frame cap) go in with one call, in order."""
    jobs = enqueue_many(
        daemon, [{"type": "NOOP", "payload": {"n": i}, **LATER} for i in range(100_000)]
    )
    assert [job.payload["n"] for job in jobs] == list(range(100_000))
    assert len({job.id for job in jobs}) == 100_000
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    assert queued(daemon) == 100_000


@CLIENTS
def test_requests_are_cut_by_encoded_size(
    make_daemon: Callable[..., Daemon], enqueue_many: EnqueueMany
) -> None:
    """Jobs with payloads near the cap go a few per request, tiny ones many per request:
    all go in, in the order given."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(SMALL_CAP))
    jobs: list[dict[str, Any]] = []
    for i in range(300):
        size = SMALL_CAP // 3 if i % 10 == 0 else 10  # every tenth job is a third of the cap
        jobs.append({"type": "NOOP", "payload": {"n": i, "pad": "x" * size}, **LATER})
    got = enqueue_many(daemon, jobs)
    assert [job.payload["n"] for job in got] == list(range(300))
    assert queued(daemon) == 300


@CLIENTS
def test_one_job_over_the_cap_is_refused_and_nothing_is_added(
    daemon: Daemon, enqueue_many: EnqueueMany
) -> None:
    """A job that alone is over the frame cap: BadInput naming it, and no job added,
    not even the ones before it."""
    jobs = [{"type": "NOOP", **LATER}] * 20_000 + [{"type": "NOOP", "payload": "x" * (2 << 20)}]
    with pytest.raises(BadInput) as refused:
        enqueue_many(daemon, jobs)
    assert str(refused.value).startswith("the job at index 20000: request of ")
    assert "exceeds the 1048576-byte frame limit" in str(refused.value)
    assert queued(daemon) == 0


@CLIENTS
def test_a_request_that_fails_after_others_raises_partial_enqueue(
    make_daemon: Callable[..., Daemon], enqueue_many: EnqueueMany
) -> None:
    """The third request is refused (a type no worker knows): the first two are
    committed, and the error carries their jobs so that the rest can be sent again."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(SMALL_CAP))
    jobs = [{"type": "NOOP", "payload": {"n": i}, **LATER} for i in range(1000)]
    jobs.append({"type": "NO_SUCH_TYPE"})
    with pytest.raises(PartialEnqueue) as partial:
        enqueue_many(daemon, jobs)
    exc = partial.value
    committed = len(exc.enqueued)
    assert 0 < committed < 1000, committed  # several requests: some went in, some not
    assert [job.payload["n"] for job in exc.enqueued] == list(range(committed))
    assert isinstance(exc.error, BadInput) and exc.__cause__ is exc.error
    assert "unknown job type 'NO_SUCH_TYPE'" in str(exc)
    assert str(exc).startswith(f"{committed} of 1001 jobs were enqueued; the rest were not: ")
    assert exc.in_doubt == 0 and exc.total == 1001
    assert queued(daemon) == committed
    rest = enqueue_many(daemon, jobs[committed:-1])  # the caller sends the rest again
    assert [job.payload["n"] for job in rest] == list(range(committed, 1000))
    assert queued(daemon) == 1000


def _varied_jobs(earlier: Job) -> list[dict[str, Any]]:
    """Jobs that nothing starts while the test looks (a paused queue, or later), of every
    kind a brief reply sends whole or leaves to the client to build."""
    held = {"queue": "held"}
    return [
        *({"type": "NOOP", "payload": {"n": n}, **LATER} for n in range(40)),
        *({"type": "NOOP", "payload": [n, (1, 2)], **held} for n in range(20)),
        {"type": "NOOP", "priority": 7, "max_attempts": 5, "timeout": 9.5, **held},
        {"type": "NOOP", "backoff": 2, "require_charging": True, **held},
        {"type": "NOOP", "at": "2001-02-03T04:05:06+00:00", **held},
        {"type": "NOOP", "at": "2099-02-03T04:05:06", "payload": "caf\u00e9 \U0001f600"},
        {"type": "NOOP", "delay": 0.25, **held},
        {"type": "NOOP", "subject": "s", **held},
        {"type": "NOOP", "subject": "s", **held},  # supersedes the one before
        {"type": "NOOP", "subject": "t", "generation": 4, **held},
        {"type": "NOOP", "subject": "d", "generation": 1, **held},  # deduplicated
        {"type": "NOOP", "after": [earlier.id], **held},
        {"type": "NOOP", "ref": "a", **held},
        {"type": "NOOP", "after": ["a"], **held},
    ]


@pytest.mark.parametrize(
    "enqueue_many", [enqueue_many_sync, enqueue_many_trio], ids=["Client", "AsyncClient-trio"]
)
def test_brief_replies_give_each_job_as_the_supervisor_has_it(
    daemon: Daemon, enqueue_many: EnqueueMany
) -> None:
    """The jobs enqueue_many returns (built from brief replies) are those a read of them
    gives, field by field, why each waits included, whatever kind of job each is."""
    with daemon.client() as client:
        client.pause("held")
        earlier = client.enqueue("NOOP", queue="held")
        client.enqueue("NOOP", queue="held", subject="d", generation=2)
    jobs = enqueue_many(daemon, _varied_jobs(earlier))
    with daemon.client() as client:
        read = client.wait_many([job.id for job in jobs], timeout=0)
    # (deduplicated says what the enqueue did: a read does not.)
    assert [msgspec.structs.replace(job, deduplicated=False) for job in jobs] == read
    assert [job.payload for job in jobs[40:42]] == [[0, [1, 2]], [1, [1, 2]]]
    assert {job.waiting_for for job in jobs} >= {"run_after", "queue_paused", "dependency"}
    assert jobs[-7].state == JobState.SUPERSEDED and jobs[-4].deduplicated


def test_a_brief_reply_holds_whole_only_the_jobs_a_client_cannot_build(daemon: Daemon) -> None:
    """An enqueue asking for a brief reply gets every id and reason, and whole only the
    jobs that are more than their spec added (a subject's, here)."""
    with daemon.client() as client:
        specs = [make_spec("NOOP", {"n": n}, **LATER) for n in range(30)]
        specs.insert(3, make_spec("NOOP", subject="s", **LATER))
        reply = client._call(Enqueue(jobs=specs, brief=True))
        assert isinstance(reply, Enqueued) and len(reply.ids) == len(specs) == 31
        assert reply.whole == [3] and [job.subject for job in reply.jobs] == ["s"]
        assert reply.waiting == ["run_after"] * 31 and reply.added_at > 0
        assert reply.ids == sorted(reply.ids)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_pipelined_requests_commit_a_prefix_when_one_fails_part_way(
    make_daemon: Callable[..., Daemon], request: pytest.FixtureRequest, store: str
) -> None:
    """The client keeps several requests in flight; the one in the middle is refused (a
    type no worker knows): those before it stay, none after it was added (the
    supervisor refused them, as they follow a failed one), on either store."""
    args = ["--store", request.getfixturevalue("pg_database")] if store == "postgres" else []
    daemon = make_daemon(*args, SEMANTICA_MAX_FRAME=str(SMALL_CAP))
    jobs = [{"type": "NOOP", "payload": {"n": i}, **LATER} for i in range(3000)]
    jobs.insert(1500, {"type": "NO_SUCH_TYPE"})
    with daemon.client() as client:
        assert "follows" in client.server_features  # (so it pipelines)
        with pytest.raises(PartialEnqueue) as partial:
            client.enqueue_many(jobs)
        exc = partial.value
        committed = len(exc.enqueued)
        assert 0 < committed <= 1500 and exc.in_doubt == 0
        assert [job.payload["n"] for job in exc.enqueued] == list(range(committed))
        assert "unknown job type 'NO_SUCH_TYPE'" in str(exc)
        assert client.status().counts[JobState.QUEUED] == committed
        # The connection is in step: the rest goes in on it, in order.
        rest = client.enqueue_many(jobs[committed:1500] + jobs[1501:])
        assert [job.payload["n"] for job in rest] == list(range(committed, 3000))
        assert client.status().counts[JobState.QUEUED] == 3000
