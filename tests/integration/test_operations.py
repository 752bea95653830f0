"""Operations through the real CLI: maintenance, migrations, logs, systemd notifications."""

from __future__ import annotations

import hashlib
import json
import select
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
from harness import Announcements, Daemon

from semantica.supervisor.store.sqlite import migrations

LATEST = migrations()[-1][0]


def test_maintenance_with_retention_zero(make_daemon: Callable[..., Daemon]) -> None:
    """maintenance --json with retention 0: finished jobs and logs go, queued ones stay."""
    daemon = make_daemon("--retention-days", "0")
    with daemon.client() as client:
        done = [client.enqueue("ADD", {"a": i, "b": 1}) for i in range(20)]
        client.wait_many([job.id for job in done], timeout=60)
        client.pause("held")
        held = client.enqueue("NOOP", queue="held")
    assert daemon.semctl("logs", str(done[0].id)).out.strip() == "adding a=0 b=1"
    assert daemon.semctl("status", "--json").json()["last_maintenance"] is None
    result = daemon.semctl("maintenance", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["jobs_deleted"] == 20 and report["logs_deleted"] == 20
    assert report["integrity"] == "ok"
    assert report["db_bytes_before"] > 0 and report["db_bytes_after"] > 0
    assert {"vacuumed", "duration_ms"} <= report.keys()
    assert daemon.semctl("show", str(done[0].id)).code == 5
    assert daemon.semctl("show", str(held.id), "--json").json()["state"] == "QUEUED"
    assert not list((daemon.home / "logs").glob(f"{done[0].id}.log*"))
    assert daemon.semctl("status", "--json").json()["last_maintenance"] is not None
    text = daemon.semctl("maintenance", "--force-vacuum")
    assert text.code == 0 and "(vacuumed)" in text.out and "integrity ok" in text.out


def _semanticad(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", *args],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_migrate_down_and_up_keeps_every_job(daemon: Daemon) -> None:
    """semanticad migrate --to 1 then migrate: every job is still there, the engine runs."""
    with daemon.client() as client:
        jobs = client.enqueue_many(
            [{"type": "ADD", "payload": {"a": i, "b": 1}} for i in range(30)]
        )
        client.wait_many([job.id for job in jobs], timeout=60)
    refused = _semanticad(daemon, "migrate", "--to", "1")
    assert refused.returncode == 2 and "running" in refused.stderr  # not under a live supervisor
    daemon.stop()
    down = _semanticad(daemon, "migrate", "--to", "1")
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith(f"schema {LATEST} -> 1")
    up = _semanticad(daemon, "migrate")
    assert up.returncode == 0 and up.stdout.startswith(f"schema 1 -> {LATEST}")
    assert list((daemon.home / "backups").glob("semantica-v1-*.db"))
    daemon.start()
    listed = daemon.semctl("list", "--limit", "100", "--json").json()
    assert sorted(job["id"] for job in listed) == sorted(job.id for job in jobs)
    assert all(job["state"] == "DONE" for job in listed)
    assert daemon.semctl("wait", daemon.semctl("enqueue", "NOOP").out.strip()).code == 0


def test_a_database_from_a_newer_semantica_is_refused_untouched(daemon: Daemon) -> None:
    """user_version 999: semanticad names both versions, exits non-zero, changes no byte."""
    daemon.stop()
    db = daemon.home / "semantica.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    result = _semanticad(daemon, "--workers", "1")
    assert result.returncode != 0
    assert "999" in result.stderr and str(LATEST) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert _semanticad(daemon, "migrate").returncode != 0


def test_progress_shows_while_the_job_runs(
    daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    """ctx.progress appears in show --json and top for the running job."""
    release = short_tmp / "release"
    payload = json.dumps({"notify": str(announcements.path), "release": str(release)})
    job_id = daemon.semctl("enqueue", "PROGRESS", "--payload", payload).out.strip()
    announcements.next()
    with daemon.client() as client:
        for _ in range(500):  # the report travels worker -> supervisor -> store
            job = client.get(int(job_id))
            if job.progress is not None:
                break
            select.select([], [], [], 0.01)
        assert job.progress == 0.5 and job.progress_message == "half way"
        assert "50%" in daemon.semctl("show", job_id).out
        rows = [w for w in client.top().workers if w.job == int(job_id)]
        assert [(w.progress, w.progress_message) for w in rows] == [(0.5, "half way")]
    release.touch()
    assert daemon.semctl("wait", job_id).code == 0


def test_json_logs_every_line_and_job_events_carry_their_fields(
    make_daemon: Callable[..., Daemon],
) -> None:
    """With SEMANTICA_LOG_FORMAT=json every output line is JSON; DONE events have the fields."""
    daemon = make_daemon()
    with daemon.client() as client:
        job = client.wait(client.enqueue("ADD", {"a": 1, "b": 2}, queue="q7").id, timeout=30)
    daemon.stop()
    lines = daemon.log().splitlines()
    assert lines and all(json.loads(line) for line in lines)
    [done] = [e for e in map(json.loads, lines) if e.get("event") == "job done"]
    assert done["job_id"] == job.id and done["state"] == "DONE" and done["queue"] == "q7"
    assert done["type"] == "ADD" and done["attempt"] == 1 and done["duration_ms"] >= 0
    file_lines = (daemon.home / "daemon.log").read_text().splitlines()
    assert [json.loads(line)["event"] for line in file_lines] == [
        json.loads(line)["event"] for line in lines
    ]


def test_each_job_of_a_fast_drain_logs_its_start_then_its_end(
    make_daemon: Callable[..., Daemon],
) -> None:
    """Short jobs are handed over in batches; each still gets "job started", then "job done"."""
    daemon = make_daemon()
    with daemon.client() as client:
        client.pause("burst")
        jobs = client.enqueue_many([{"type": "NOOP", "queue": "burst"}] * 600)
        client.resume("burst")
        client.wait_many([job.id for job in jobs], timeout=60)
    daemon.stop()
    seen: dict[int, list[str]] = {job.id: [] for job in jobs}
    for event in daemon.events():
        if event.get("job_id") in seen and event["event"].startswith("job "):
            seen[event["job_id"]].append(event["event"])
    wrong = {
        job_id: events for job_id, events in seen.items() if events != ["job started", "job done"]
    }
    assert not wrong, f"{len(wrong)} of 600 jobs, e.g. {list(wrong.items())[:3]}"


def test_systemd_notifications_ready_stopping_and_watchdog(short_tmp: Path) -> None:
    """Under a NOTIFY_SOCKET: READY=1 once up, WATCHDOG=1 when asked for, STOPPING=1 on SIGTERM."""
    daemon = Daemon(home=short_tmp / "home")
    notify_path = short_tmp / "sd.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.settimeout(30)
    proc = subprocess.Popen(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1"],
        env=daemon.env(NOTIFY_SOCKET=str(notify_path), WATCHDOG_USEC="400000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen = []
        while "STOPPING=1" not in seen:
            message = sock.recv(256).decode()
            seen.append(message)
            if message == "READY=1":
                assert seen.count("READY=1") == 1
            if seen.count("WATCHDOG=1") == 2:
                proc.send_signal(signal.SIGTERM)
        assert seen[0] == "READY=1"
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def test_memory_stays_flat_whatever_batch_sizes_and_waits_clients_send(daemon: Daemon) -> None:
    """Batches of 150 different sizes, and waits on as many different numbers of ids:
    the supervisor's RSS grows by a few MB (its page cache), not by a prepared
    statement per size (that was +50 MB)."""
    assert daemon.proc is not None
    supervisor = psutil.Process(daemon.proc.pid)
    with daemon.client() as client:
        client.enqueue_many([{"type": "NOOP", "delay": 3600}] * 300)  # first-use allocations
        before = supervisor.memory_info().rss
        ids: list[int] = []
        for size in range(2, 302, 2):
            jobs = client.enqueue_many([{"type": "NOOP", "delay": 3600}] * size)
            ids += [job.id for job in jobs]
            client.wait_many(ids[-size - 1 :], timeout=0)  # a wait of size + 1 ids
        grown = supervisor.memory_info().rss - before
    assert len(ids) == sum(range(2, 302, 2))
    assert grown < 15 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB"
