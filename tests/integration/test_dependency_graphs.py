"""Jobs that wait for other jobs, end to end: a real supervisor, its socket, semctl and Client.

The graph of the acceptance test has three levels and a failure in the middle:

    root ──> middle (fails until a flag file exists) ──> below-middle
         └─> other ──> below-other

The branch below the failure ends ``dependency_failed``; the other branch runs;
``retry MIDDLE --dependents`` brings the branch back once the flag exists, and it
completes. The same graph goes in through ``semctl enqueue --after``, through
``enqueue_many`` refs (one request), and on the PostgreSQL store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon

from semantica import Client, Job, JobState

pytestmark = pytest.mark.slow


def _sh(script: str) -> dict[str, Any]:
    return {"argv": ["sh", "-c", script]}


def _finished(client: Client, ids: list[int]) -> dict[int, Job]:
    jobs = client.wait_many(ids, timeout=60)
    assert all(job.state != JobState.QUEUED and job.state != JobState.RUNNING for job in jobs)
    return {job.id: job for job in jobs}


def _check_graph(client: Client, ids: dict[str, int], flag: Path) -> None:
    """The acceptance: the branch below the failure cancelled, the other run, and a retry
    with dependents bringing the branch back to DONE."""
    ended = _finished(client, list(ids.values()))
    assert ended[ids["root"]].state == JobState.DONE
    assert ended[ids["other"]].state == JobState.DONE
    assert ended[ids["below_other"]].state == JobState.DONE
    assert ended[ids["middle"]].state == JobState.FAILED
    below = ended[ids["below_middle"]]
    assert below.state == JobState.CANCELLED
    assert below.error is not None and below.error.kind == "dependency_failed"
    assert below.error.message == f"job {ids['middle']} ended FAILED"
    flag.touch()
    client.retry(ids["middle"], dependents=True)
    again = _finished(client, [ids["middle"], ids["below_middle"]])
    assert again[ids["middle"]].state == JobState.DONE
    assert again[ids["below_middle"]].state == JobState.DONE


def _graph_specs(flag: Path) -> list[dict[str, Any]]:
    fails = _sh(f"test -e {flag}")
    return [
        {"type": "exec", "payload": _sh("true"), "ref": "root"},
        {"type": "exec", "payload": fails, "ref": "middle", "after": ["root"], "max_attempts": 1},
        {"type": "exec", "payload": _sh("true"), "ref": "other", "after": ["root"]},
        {"type": "exec", "payload": _sh("true"), "ref": "below_middle", "after": ["middle"]},
        {"type": "exec", "payload": _sh("true"), "ref": "below_other", "after": ["other"]},
    ]


def _by_ref(specs: list[dict[str, Any]], jobs: list[Job]) -> dict[str, int]:
    return {spec["ref"]: job.id for spec, job in zip(specs, jobs, strict=True)}


def test_a_three_level_graph_with_a_failure_in_the_middle_from_semctl(
    daemon: Daemon, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"

    def enqueue(*args: str) -> int:
        result = daemon.semctl("enqueue", *args)
        assert result.code == 0, result.err
        return int(result.out)

    # The root waits for a gate, so that the others are seen waiting first.
    gate = tmp_path / "gate"
    ids = {"root": enqueue("exec", "--", "sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.05; done")}
    ids["middle"] = enqueue(
        "--after", str(ids["root"]), "--max-attempts", "1", "exec", "--", "test", "-e", str(flag)
    )
    ids["other"] = enqueue("--after", str(ids["root"]), "exec", "--", "true")
    ids["below_middle"] = enqueue("--after", str(ids["middle"]), "exec", "--", "true")
    ids["below_other"] = enqueue("--after", str(ids["other"]), "exec", "--", "true")
    shown = daemon.semctl("show", str(ids["below_middle"]))
    assert shown.code == 0, shown.err
    assert f"dependency (job {ids['middle']})" in shown.out
    assert f"{ids['middle']} (QUEUED)" in shown.out
    shown = daemon.semctl("show", str(ids["root"]))
    assert f"{ids['middle']}, {ids['other']}" in shown.out  # its dependents
    status = json.loads(daemon.semctl("status", "--json").out)
    assert status["waiting_on_dependencies"] == 4
    gate.touch()
    with daemon.client() as client:
        ended = _finished(client, list(ids.values()))
        assert ended[ids["below_middle"]].state == JobState.CANCELLED
        refused = daemon.semctl("retry", str(ids["below_middle"]))
        assert refused.code == 2
        assert f"retry {ids['middle']} --dependents" in refused.err
        assert "\n" not in refused.err.strip()
        _check_graph(client, ids, flag)


def test_an_unknown_job_id_is_refused_and_adds_nothing(daemon: Daemon) -> None:
    result = daemon.semctl("enqueue", "--after", "4242", "exec", "--", "true")
    assert result.code != 0 and "no job 4242" in result.err
    with daemon.client() as client:
        assert client.status().counts[JobState.QUEUED] == 0


def test_a_job_added_after_a_failed_one_is_said_to_be_cancelled(daemon: Daemon) -> None:
    """A job enqueued after a job already FAILED is added CANCELLED at once: semctl
    still prints its id (scripts read it), and says on stderr, in one line, why it
    will not run."""
    failed = daemon.semctl("enqueue", "--max-attempts", "1", "exec", "--", "false")
    assert daemon.semctl("wait", failed.out.strip()).code == 1
    result = daemon.semctl("enqueue", "--after", failed.out.strip(), "exec", "--", "true")
    assert result.code == 0, result.err
    job_id = int(result.out)
    assert result.err == (
        f"semctl: job {job_id} was added CANCELLED: "
        f"dependency_failed: job {failed.out.strip()} ended FAILED\n"
    )
    done = daemon.semctl("enqueue", "--after-end", failed.out.strip(), "exec", "--", "true")
    assert done.code == 0 and done.err == ""  # --after-end: it runs


def test_the_same_graph_through_enqueue_many_refs(daemon: Daemon, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    specs = list(reversed(_graph_specs(flag)))  # any order: the refs say which is first
    with daemon.client() as client:
        jobs = client.enqueue_many(specs)
        assert [job.payload for job in jobs] == [spec["payload"] for spec in specs]
        _check_graph(client, _by_ref(specs, jobs), flag)


def test_a_cycle_is_refused_in_one_line(daemon: Daemon) -> None:
    with daemon.client() as client, pytest.raises(Exception, match="cycle: 'a' -> 'b' -> 'a'"):
        client.enqueue_many(
            [
                {"type": "exec", "payload": _sh("true"), "ref": "a", "after": ["b"]},
                {"type": "exec", "payload": _sh("true"), "ref": "b", "after": ["a"]},
            ]
        )


def test_the_graph_on_the_postgresql_store(
    make_daemon: Callable[..., Daemon], pg_database: str, tmp_path: Path
) -> None:
    node = make_daemon("--store", pg_database, "--node-name", "n1")
    flag = tmp_path / "flag"
    specs = _graph_specs(flag)
    with node.client() as client:
        jobs = client.enqueue_many(specs)
        _check_graph(client, _by_ref(specs, jobs), flag)
