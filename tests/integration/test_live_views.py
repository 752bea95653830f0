"""Live views through the real CLI and clients: tail, top, metrics, AsyncClient."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import trio
from harness import SEMCTL, Daemon
from lines import Lines
from prometheus_client.parser import text_string_to_metric_families

from semantica import AsyncClient, NoSuchJob


@pytest.fixture
def lines_of(daemon: Daemon) -> Iterator[Callable[..., Lines]]:
    started: list[Lines] = []

    def start(*args: str) -> Lines:
        started.append(Lines([SEMCTL, *args], daemon.env()))
        return started[-1]

    yield start
    for lines in started:
        lines.close()


def _release(gate: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"go", str(gate))


def _gate_ready(gate: Path) -> None:
    while not gate.exists():  # the handler binds it; nothing else can tell us
        trio_free_wait = select.select([], [], [], 0.01)
        del trio_free_wait


def test_tail_shows_lines_in_order_as_written_and_exits_with_the_job(
    daemon: Daemon, lines_of: Callable[..., Lines], short_tmp: Path
) -> None:
    """semctl tail ID prints each line when the handler writes it, then exits 0 with DONE."""
    gate = short_tmp / "gate.sock"
    payload = json.dumps({"count": 3, "gate": str(gate)})
    job_id = daemon.semctl("enqueue", "LINES", "--payload", payload).out.strip()
    tail = lines_of("tail", job_id)
    for i in range(3):
        assert tail.next() == f"line {i}"  # it arrives before the handler is let go on
        _gate_ready(gate)
        _release(gate)
    assert tail.proc.wait(15) == 0


def test_tail_of_a_failing_job_exits_1(daemon: Daemon) -> None:
    """semctl tail exits 1 when the job ends FAILED, after printing its whole log."""
    payload = json.dumps({"count": 2, "fail": True})
    job_id = daemon.semctl("enqueue", "LINES", "--payload", payload, "--max-attempts", "1").out
    result = daemon.semctl("tail", job_id.strip())
    assert result.code == 1
    assert result.out.splitlines()[:2] == ["line 0", "line 1"]


def test_tail_of_an_unknown_job_exits_5(daemon: Daemon) -> None:
    """Following a job that does not exist is exit 5."""
    assert daemon.semctl("tail", "4242").code == 5


def test_tail_without_id_shows_every_event(daemon: Daemon, lines_of: Callable[..., Lines]) -> None:
    """semctl tail --json prints one JSON object per job event: enqueued, started, done/failed."""
    events = lines_of("tail", "--json")
    with daemon.client() as client:
        # semctl takes a while to start on a loaded machine: the stream is open
        # once the events of a probe job show up in it.
        while events.poll(0.5) is None:
            client.enqueue("NOOP", queue="probe")
        ok = client.enqueue("NOOP")
        bad = client.enqueue("FAIL", max_attempts=1)
    seen: dict[int, list[str]] = {ok.id: [], bad.id: []}
    while seen[ok.id][-1:] != ["done"] or seen[bad.id][-1:] != ["failed"]:
        event = json.loads(events.next())
        assert "t" not in event and "rid" not in event  # the wire's fields stay on the wire
        seen.setdefault(event["job_id"], []).append(event["event"])
    assert seen[ok.id] == ["enqueued", "started", "done"]
    assert seen[bad.id] == ["enqueued", "started", "failed"]


def test_top_once_shows_workers_and_queues(daemon: Daemon) -> None:
    """semctl top --once prints the worker pids and the queues."""
    assert daemon.semctl("pause", "--create", "later").code == 0
    result = daemon.semctl("top", "--once")
    assert result.code == 0, result.err
    for pid in daemon.worker_pids():
        assert str(pid) in result.out
    assert "later" in result.out


def test_top_reply_has_what_the_dashboard_needs(daemon: Daemon) -> None:
    """One top request carries workers, queues, throughput, failures and waiting jobs."""
    with daemon.client() as client:
        client.wait(client.enqueue("FAIL", max_attempts=1).id, timeout=30)
        client.pause("held")
        held = client.enqueue("NOOP", queue="held")
        top = client.top()
    assert {w.pid for w in top.workers} == daemon.worker_pids()
    assert {q.name for q in top.queues} >= {"held", "default"}
    assert top.finished_60s >= 1 and top.supervisor_rss_bytes > 0
    assert [job.type for job in top.failures] == ["FAIL"]
    assert [(job.id, job.waiting_for) for job in top.waiting] == [(held.id, "queue_paused")]


def test_top_reply_counts_the_last_hour_by_the_minute(daemon: Daemon) -> None:
    """The dashboard's chart: sixty minutes, one apart, the current one last, with the
    jobs enqueued, finished and failed in each."""
    with daemon.client() as client:
        client.wait(client.enqueue("NOOP").id, timeout=30)
        client.wait(client.enqueue("FAIL", max_attempts=1).id, timeout=30)
        top = client.top()
    minutes = top.per_minute
    assert len(minutes) == 60
    now = datetime.now(UTC)
    assert minutes[-1].start <= now < minutes[-1].start + timedelta(minutes=1)
    assert minutes[-1].start.second == 0 and minutes[-1].start.microsecond == 0
    assert [b.start - a.start for a, b in pairwise(minutes)] == [timedelta(minutes=1)] * 59
    totals = [sum(getattr(m, name) for m in minutes) for name in ("enqueued", "finished", "failed")]
    assert totals == [2, 2, 1]


def test_top_and_metrics_take_json(daemon: Daemon) -> None:
    """Every reading command takes --json: top (one snapshot) and metrics (by family)."""
    with daemon.client() as client:
        client.wait(client.enqueue("NOOP").id, timeout=30)
    top = daemon.semctl("top", "--json")
    assert top.code == 0, top.err
    snapshot = top.json()
    assert {w["pid"] for w in snapshot["workers"]} == daemon.worker_pids()
    assert "rid" not in snapshot and "t" not in snapshot
    metrics = daemon.semctl("metrics", "--json")
    assert metrics.code == 0, metrics.err
    families = metrics.json()
    jobs = {s["labels"]["state"]: s["value"] for s in families["semantica_jobs"]["samples"]}
    assert jobs["DONE"] == 1 and families["semantica_jobs"]["type"] == "gauge"


def _families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_parse_as_prometheus_text(daemon: Daemon) -> None:
    """semctl metrics is valid exposition text with the documented metrics and values."""
    with daemon.client() as client:
        client.wait(client.enqueue("NOOP").id, timeout=30)
        client.wait(client.enqueue("FAIL", max_attempts=1).id, timeout=30)
    families = _families(daemon.semctl("metrics").out)
    assert {
        "semantica_jobs",
        "semantica_jobs_finished",
        "semantica_job_duration_seconds",
        "semantica_enqueued",
        "semantica_workers",
    } <= families.keys()
    jobs = {s.labels["state"]: s.value for s in families["semantica_jobs"].samples}
    assert jobs["DONE"] == 1 and jobs["FAILED"] == 1
    finished = {
        (s.labels["type"], s.labels["state"]): s.value
        for s in families["semantica_jobs_finished"].samples
        if s.name.endswith("_total")
    }
    assert finished == {("NOOP", "DONE"): 1, ("FAIL", "FAILED"): 1}
    workers = {s.labels["state"]: s.value for s in families["semantica_workers"].samples}
    assert workers["idle"] + workers["busy"] == 2
    # Two jobs: each an enqueue, a lease and an end. Group commit may batch them.
    [commits] = families["semantica_store_commits"].samples
    [writes] = families["semantica_store_writes"].samples
    assert writes.value >= 6 and 1 <= commits.value <= writes.value


def test_metrics_over_http_on_loopback(make_daemon: Callable[..., Daemon]) -> None:
    """--metrics-addr serves /metrics for a Prometheus scraper, and 404 for anything else."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = make_daemon("--metrics-addr", f"127.0.0.1:{port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "semantica_workers" in _families(response.read().decode())
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
    assert missing.value.code == 404
    missing.value.close()
    assert daemon.semctl("status").code == 0


def test_metrics_address_beyond_loopback_is_refused(short_tmp: Path) -> None:
    """A non-loopback metrics address needs SEMANTICA_METRICS_PUBLIC=1: exit 2, one line."""
    daemon = Daemon(home=short_tmp / "home")
    result = subprocess.run(
        [os.fspath(Path(SEMCTL).parent / "semanticad"), "--metrics-addr", "0.0.0.0:9100"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "SEMANTICA_METRICS_PUBLIC" in result.stderr
    assert not daemon.home.exists()


async def test_async_client_pipelines_and_streams(daemon: Daemon) -> None:
    """AsyncClient: many enqueues in flight on one connection, then follow and events."""
    async with AsyncClient(home=daemon.home) as client:
        results: list[int] = []

        async def add(i: int) -> None:
            job = await client.enqueue("ADD", {"a": i, "b": 1})
            results.append(job.id)

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(add, i)
        assert len(set(results)) == 50
        done = await client.wait_many(results, timeout=60)
        assert sorted(job.result["sum"] for job in done) == list(range(1, 51))

        job = await client.enqueue("LINES", {"count": 3})
        assert [line async for line in client.follow(job.id)] == ["line 0", "line 1", "line 2"]
        assert (await client.get(job.id)).state == "DONE"

        seen = []
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for event in client.events():
                    seen.append(event.event)
                    if event.event == "done":
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await trio.sleep(0.3)  # let the stream open; events before it are not replayed
            await client.enqueue("NOOP")
        assert seen == ["enqueued", "started", "done"]


async def test_async_client_errors_and_cancellation_stay_plain(daemon: Daemon) -> None:
    """Errors leave `async with AsyncClient()` as they are; a cancelled call harms no other."""
    with pytest.raises(NoSuchJob):
        async with AsyncClient(home=daemon.home) as client:
            await client.get(987654)
    async with AsyncClient(home=daemon.home) as client:
        job = await client.enqueue("HANG", {})
        with trio.move_on_after(0.3) as waited:
            await client.wait(job.id)  # never finishes by itself
        assert waited.cancelled_caught
        assert (await client.get(job.id)).state == "RUNNING"  # the connection still works
        await client.cancel(job.id)
    lazy = AsyncClient(home=daemon.home)  # connects on first use, no `async with` needed
    assert (await lazy.status()).workers
    await lazy.aclose()


def test_sync_client_can_call_while_a_stream_is_open(daemon: Daemon) -> None:
    """Client.follow uses a connection of its own: other calls work while it is open."""
    with daemon.client() as client:
        job = client.enqueue("LINES", {"count": 2})
        lines = client.follow(job.id)
        first = next(lines)
        assert client.get(job.id).id == job.id
        assert [first, *lines] == ["line 0", "line 1"]
