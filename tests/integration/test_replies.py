"""Replies of many jobs are bounded, against the real supervisor.

A ``list`` or ``wait`` reply carries as many jobs as fit in one frame (the
supervisor's frame cap) and says there is more; the clients ask for the rest
themselves. Rows stored before the size caps are cut when read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from harness import Daemon

from semantica import AsyncClient
from semantica.control import client as client_module
from semantica.models import JobError, JobSpec
from semantica.protocol import ControlReply, FrameDecoder, ListJobs, Wait
from semantica.supervisor.store import prepare
from semantica.supervisor.store.sqlite import SQLiteStore
from semantica.supervisor.topview import ROW_TEXT

KIB = 1024


def _old_database(home: Path, jobs: int, message_size: int) -> None:
    """A state directory whose database holds FAILED jobs with huge error messages, as
    a version without size caps could store them."""
    home.mkdir(mode=0o700)
    store = SQLiteStore(home / "semantica.db", durability="normal")
    store.insert(prepare([JobSpec(type="NOOP", max_attempts=1) for _ in range(jobs)]))
    for n in range(jobs):
        lease = store.lease(worker_pid=1)
        assert lease is not None
        store.fail(lease, JobError("exception", f"{n} " + "e" * message_size), retry_at=None)
    store.close()


def test_jobs_stored_with_24_mb_errors_do_not_break_list_wait_show_or_top(
    make_daemon: Callable[..., Daemon], short_tmp: Path
) -> None:
    """Twelve jobs with 24 MB error messages (a 302 MB reply once: list and wait_many
    failed) read back cut, in every view."""
    _old_database(short_tmp / "home", 12, 24_000_000)
    daemon = make_daemon()

    out = daemon.semctl("list")
    assert out.code == 0, out.err
    assert len([line for line in out.out.splitlines() if " FAILED " in line]) == 12
    listed = daemon.semctl("list", "--json").json()
    with daemon.client() as client:
        waited = client.wait_many([job["id"] for job in listed])
        top = client.top()
    shown = daemon.semctl("show", str(listed[0]["id"]), "--json").json()
    messages = [job["error"]["message"] for job in [*listed, shown]]
    messages += [job.error.message for job in waited if job.error]
    assert len(messages) == 12 + 1 + 12
    for message in messages:
        assert message.endswith("eee… [cut: error message over 16 KiB]")
        assert len(message.encode()) <= 16 * KIB
    # top shows each failure on one row: its messages are cut shorter still.
    shown_in_top = [job.error.message for job in top.failures if job.error]
    assert len(shown_in_top) == 5
    assert all(m.split()[0].isdigit() and len(m) <= ROW_TEXT for m in shown_in_top)


def _tight(client: object, cap: int) -> None:
    """Make a connected client refuse any reply frame over ``cap`` bytes, as a client in
    another language that trusts the supervisor's frame cap would."""
    client._decoder = FrameDecoder(ControlReply, cap)  # type: ignore[attr-defined]


@pytest.mark.parametrize("frame", [16 * KIB, 64 * KIB])
def test_every_list_and_wait_reply_fits_in_the_frame_cap(
    make_daemon: Callable[..., Daemon], frame: int
) -> None:
    """300 jobs of 1 KiB each are 300 KiB: they come in several replies, each within the
    supervisor's frame cap, and the client puts them together."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(frame))
    with daemon.client() as client:
        ids = []
        for _ in range(30):  # (each request within the frame cap too)
            batch = client.enqueue_many(
                [{"type": "NOOP", "payload": "p" * KIB, "delay": 3600}] * 10
            )
            ids += [job.id for job in batch]
        _tight(client, frame)
        listed = client.list(limit=300)
        assert [job.id for job in listed] == ids[::-1]
        assert all(job.payload == "p" * KIB for job in listed)
        assert [job.id for job in client.list(limit=250)] == ids[:49:-1]
        waited = client.wait_many(ids, timeout=0)
        assert [job.id for job in waited] == ids
        assert [job.id for job in client.wait_many(ids[::-1] + ids[:3], timeout=0)] == (
            ids[::-1] + ids[:3]
        )
        assert all(job.waiting_for == "run_after" for job in waited)


@pytest.mark.parametrize("frame", [16 * KIB])
def test_async_client_list_and_wait_many_page_like_the_client(
    make_daemon: Callable[..., Daemon], frame: int
) -> None:
    """AsyncClient asks for the rest of a list or wait too: with every reply held to the
    supervisor's frame cap, 300 jobs of 1 KiB come back whole, in order, with the total."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(frame))
    with daemon.client() as client:
        ids = []
        for _ in range(30):
            batch = client.enqueue_many(
                [{"type": "NOOP", "payload": "p" * KIB, "delay": 3600}] * 10
            )
            ids += [job.id for job in batch]

    async def check() -> None:
        async with AsyncClient(home=daemon.home) as client:
            await client.status()  # connected: now hold its replies to the frame cap
            conn = client._conn  # the test reaches in to tighten the decoder
            assert conn is not None
            conn._decoder = FrameDecoder(ControlReply, frame)  # as above
            listed = await client.list(limit=300)
            assert [job.id for job in listed] == ids[::-1]
            assert listed.total == 300
            assert [job.id for job in await client.list(limit=250)] == ids[:49:-1]
            waited = await client.wait_many(ids, timeout=0)
            assert [job.id for job in waited] == ids
            assert all(job.payload == "p" * KIB for job in waited)

    trio.run(check)


def test_wait_many_of_10000_jobs_with_large_results(make_daemon: Callable[..., Daemon]) -> None:
    """10,000 jobs of 28 kB results are 280 MB, over any one reply a client takes:
    wait_many returns them all, and `semctl list` still answers."""
    daemon = make_daemon(SEMANTICA_DURABILITY="normal")
    payload = {"what": "result", "n": 28_000}
    with daemon.client() as client:
        ids = []
        for _ in range(10):
            batch = client.enqueue_many([{"type": "BIG", "payload": payload}] * 1000)
            ids += [job.id for job in batch]
        jobs = client.wait_many(ids, timeout=300)
    assert [job.id for job in jobs] == ids
    assert all(job.state == "DONE" and job.result == "r" * 28_000 for job in jobs)
    out = daemon.semctl("list", "--json", "--limit", "100")
    assert out.code == 0, out.err
    assert [job["id"] for job in json.loads(out.out)] == ids[:-101:-1]


def test_list_says_when_it_stopped_at_its_limit(daemon: Daemon) -> None:
    """`semctl list` ends with "50 of 1,234 shown" when more jobs match than it shows;
    --json stays one document, the array of the jobs shown."""
    with daemon.client() as client:
        client.enqueue_many([{"type": "NOOP", "delay": 3600}] * 1234)
        client.enqueue_many([{"type": "NOOP", "delay": 3600, "queue": "few"}] * 3)
    out = daemon.semctl("list")
    assert out.code == 0, out.err
    lines = out.out.splitlines()
    assert lines[-1] == "50 of 1,237 shown"
    assert len([line for line in lines if " QUEUED " in line]) == 50
    assert daemon.semctl("list", "--queue", "default", "--limit", "7").out.splitlines()[-1] == (
        "7 of 1,234 shown"
    )
    few = daemon.semctl("list", "--queue", "few").out
    assert "shown" not in few and few.count(" QUEUED ") == 3
    listed = daemon.semctl("list", "--json").json()
    assert isinstance(listed, list) and len(listed) == 50


def test_following_a_long_log_comes_in_frames_within_the_cap(
    make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Following a job with more log than a frame holds (9,000 lines, 85 kB) gets it in
    chunks within the frame cap, every line in order."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(16 * KIB))
    payload = json.dumps({"count": 9000})
    job_id = daemon.semctl("enqueue", "LINES", "--payload", payload).out.strip()
    assert daemon.semctl("wait", job_id).code == 0
    monkeypatch.setattr(client_module, "_REPLY_CAP", 16 * KIB)  # every connection's
    with daemon.client() as client:
        lines = list(client.follow(int(job_id)))
    assert lines == [f"line {n}" for n in range(9000)]


def test_an_older_client_that_does_not_page_gets_every_job_in_one_reply(
    make_daemon: Callable[..., Daemon],
) -> None:
    """A request without `paged` (from a client that does not follow `more`) is answered
    whole, as before: it never gets part of what it asked for without knowing it."""
    daemon = make_daemon(SEMANTICA_MAX_FRAME=str(16 * KIB))
    with daemon.client() as client:
        ids = []
        for _ in range(10):
            batch = client.enqueue_many([{"type": "NOOP", "payload": "p" * KIB, "delay": 60}] * 10)
            ids += [job.id for job in batch]
        listed = client._call(ListJobs(limit=100))
        waited = client._call(Wait(ids=ids, timeout=0))
    assert [job.id for job in listed.jobs] == ids[::-1] and not listed.more
    assert listed.total == 100
    assert [job.id for job in waited.jobs] == ids and not waited.more
