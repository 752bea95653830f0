"""Operations through the real CLI: maintenance, migrations, logs, systemd notifications."""

from __future__ import annotations

from collections.abc import Callable

from harness import Daemon


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
