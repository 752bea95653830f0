"""Maintenance: old finished jobs and their logs go, queued ones stay, space comes back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio
from enqueueing import enqueue

from semantica.clock import FakeClock
from semantica.models import JobSpec, JobState
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.maintenance import Maintenance, StoreGate
from semantica.supervisor.store.sqlite import SQLiteStore


def _finish(store: SQLiteStore, n: int, payload_size: int = 2000) -> list[int]:
    """Enqueue and complete n jobs with payloads big enough to take space."""
    ids = []
    for job in enqueue(store, [JobSpec(type="T", payload="x" * payload_size)] * n).jobs:
        lease = store.lease(worker_pid=1)
        assert lease is not None
        store.complete(lease, b'"ok"')
        ids.append(job.id)
    return ids


async def test_retention_zero_deletes_finished_jobs_and_their_logs(tmp_path: Path) -> None:
    """With retention 0 every finished job and its log goes; queued jobs and theirs stay."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "semantica.db", clock)
    logs = JobLogs(tmp_path / "logs", 1 << 20)
    finished = _finish(store, 300)
    for job_id in finished[:10]:
        logs.append(job_id, ["done"])
        logs.close(job_id)
    [queued] = enqueue(store, [JobSpec(type="T")]).jobs
    logs.append(queued.id, ["still queued, log kept"])
    logs.append(10_000_000, ["a log of no job"])
    clock.advance(1)
    maintenance = Maintenance(store, logs, StoreGate(), retention_days=0, interval_hours=24)

    report = await maintenance.run_once()

    assert report.jobs_deleted == 300
    assert report.logs_deleted == 11  # ten finished jobs' logs and the orphan
    assert report.integrity == "ok"
    assert report.db_bytes_before > report.db_bytes_after
    assert report.vacuumed  # most of the file was free
    assert store.counts()[JobState.DONE] == 0
    assert store.get(queued.id).state == JobState.QUEUED
    assert logs.tail(queued.id) == ["still queued, log kept"]
    assert logs.job_ids_on_disk() == {queued.id}
    assert maintenance.last_run is not None
    logs.close_all()
    store.close()


async def test_retention_keeps_recent_finished_jobs(tmp_path: Path) -> None:
    """Jobs that finished within the retention period are kept."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "semantica.db", clock)
    old = _finish(store, 5, payload_size=10)
    clock.advance(2 * 86400)
    recent = _finish(store, 3, payload_size=10)
    maintenance = Maintenance(
        store,
        JobLogs(tmp_path / "logs", 1 << 20),
        StoreGate(),
        retention_days=1,
        interval_hours=24,
    )
    report = await maintenance.run_once()
    assert report.jobs_deleted == len(old)
    assert [job.id for job in store.list(limit=100)] == sorted(recent, reverse=True)
    store.close()


async def test_forced_vacuum_rewrites_the_file_and_holds_writers_at_the_gate(
    tmp_path: Path,
) -> None:
    """--force-vacuum closes the gate while VACUUM runs; writers pass once it is done."""
    store = SQLiteStore(tmp_path / "semantica.db", FakeClock())
    _finish(store, 50)
    gate = StoreGate()
    maintenance = Maintenance(
        store, JobLogs(tmp_path / "logs", 1 << 20), gate, retention_days=30, interval_hours=24
    )
    passed_during: list[bool] = []
    async with trio.open_nursery() as nursery:
        running = trio.Event()

        async def writer() -> None:
            await running.wait()
            await gate.passage()
            passed_during.append(maintenance._lock.locked())

        nursery.start_soon(writer)
        real_closed = gate.closed

        def closed_and_signal():  # type: ignore[no-untyped-def]
            running.set()
            return real_closed()

        gate.closed = closed_and_signal  # type: ignore[method-assign]
        report = await maintenance.run_once(force_vacuum=True)
    assert report.vacuumed and report.integrity == "ok"
    assert passed_during == [True]  # let through after VACUUM, while the run finished up
    with sqlite3.connect(tmp_path / "semantica.db") as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    store.close()


async def test_queues_with_no_job_left_and_no_setting_are_forgotten(tmp_path: Path) -> None:
    """Maintenance forgets a queue once its last job is deleted, unless it is paused or
    limited; queues with jobs stay. A forgotten queue works again at its next job."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "semantica.db", clock)
    logs = JobLogs(tmp_path / "logs", 1 << 20)
    for n in range(1200):  # more than one batch of them
        enqueue(store, [JobSpec(type="T", queue=f"used-{n}")])
        lease = store.lease(worker_pid=1)
        assert lease is not None
        store.complete(lease, None)
    enqueue(store, [JobSpec(type="T", queue="running"), JobSpec(type="T", queue="queued")])
    assert store.lease(worker_pid=1) is not None
    store.set_queue("paused", paused=True)
    store.set_queue("limited", limit=2)
    store.set_queue("was-paused", paused=True)
    store.set_queue("was-paused", paused=False)
    clock.advance(1)
    maintenance = Maintenance(store, logs, StoreGate(), retention_days=0, interval_hours=24)

    report = await maintenance.run_once()

    assert report.jobs_deleted == 1200 and report.queues_forgotten == 1201
    assert [q.name for q in store.queues()] == ["limited", "paused", "queued", "running"]
    enqueue(store, [JobSpec(type="T", queue="used-7")])
    assert [lease.queue for lease in store.lease_many(worker_pid=1, count=5)] == [
        "queued",
        "used-7",
    ]
    assert "used-7" in [q.name for q in store.queues()]
    store.close()
