"""A user's first session: start the supervisor, run Python and exec jobs, read results and logs."""

from __future__ import annotations

import os
import stat

from harness import Daemon


def test_status_shows_the_workers_and_files_are_private(daemon: Daemon) -> None:
    """status --json lists two live workers; the state dir is 0700, socket and token 0600."""
    status = daemon.semctl("status", "--json")
    assert status.code == 0, status.err
    doc = status.json()
    assert {"version", "uptime_s", "db_bytes", "counts", "workers"} <= doc.keys()
    assert len(doc["workers"]) == 2
    assert all(w["state"] == "idle" and w["job"] is None for w in doc["workers"])
    assert doc["db_bytes"] > 0
    assert set(doc["counts"]) == {"QUEUED", "RUNNING", "DONE", "FAILED", "CANCELLED", "SUPERSEDED"}
    assert stat.S_IMODE(os.stat(daemon.home).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(daemon.home / "token").st_mode) == 0o600
    for name in ("semantica.db", "logs"):
        assert os.stat(daemon.home / name).st_mode & 0o077 == 0, name


def test_python_handler_job_ends_done_with_result_and_log(daemon: Daemon) -> None:
    """A handler's return value is the job's result and its ctx.log lines are the job's log."""
    enq = daemon.semctl("enqueue", "ADD", "--payload", '{"a": 2, "b": 3}')
    assert enq.code == 0, enq.err
    job_id = enq.out.strip()
    assert job_id.isdigit()
    waited = daemon.semctl("wait", job_id)
    assert waited.code == 0
    assert waited.out.strip() == f"{job_id} DONE"
    job = daemon.semctl("show", job_id, "--json").json()
    assert job["state"] == "DONE"
    assert job["result"] == {"sum": 5}
    assert job["attempts"] == 1 and job["error"] is None
    assert job["started_at"] and job["finished_at"]
    for key in (
        "id",
        "type",
        "queue",
        "subject",
        "generation",
        "priority",
        "state",
        "attempts",
        "max_attempts",
        "created_at",
        "started_at",
        "finished_at",
        "result",
        "error",
        "waiting_for",
    ):
        assert key in job
    assert daemon.semctl("logs", job_id).out == "adding a=2 b=3\n"


def test_async_handler_through_the_python_client(daemon: Daemon) -> None:
    """Client.enqueue and Client.wait run an async handler to DONE."""
    with daemon.client() as client:
        job = client.enqueue("ASYNC_ADD", payload={"a": 1, "b": 41}, priority=5, queue="q1")
        assert job.state == "QUEUED" and job.priority == 5 and job.queue == "q1"
        done = client.wait(job.id, timeout=30)
        assert done.state == "DONE"
        assert done.result == {"sum": 42}
        assert client.logs(job.id) == ["async adding"]


def test_exec_job_output_goes_to_its_log(daemon: Daemon, tmp_path: os.PathLike[str]) -> None:
    """An exec job's stdout and stderr lines land in its log; exit 0 is DONE; it runs in our cwd."""
    enq = daemon.semctl(
        "enqueue", "exec", "--", "sh", "-c", "echo out-line; echo err-line >&2; pwd"
    )
    assert enq.code == 0, enq.err
    job_id = enq.out.strip()
    assert daemon.semctl("wait", job_id).code == 0
    job = daemon.semctl("show", job_id, "--json").json()
    assert job["state"] == "DONE"
    assert job["result"] == {"exit_status": 0}
    lines = daemon.semctl("logs", job_id).out.splitlines()
    assert "out-line" in lines and "err-line" in lines
    assert lines[-1] == os.getcwd()
    assert daemon.semctl("logs", job_id, "-n", "1").out.splitlines() == [os.getcwd()]


def test_a_command_writing_faster_than_its_log_is_sent_loses_no_line(daemon: Daemon) -> None:
    """`seq 1 100000` writes 100,000 lines at once: the job's log has every one of them, in
    order (the command waits on its pipe while the log catches up; nothing is dropped)."""
    with daemon.client() as client:
        job = client.enqueue("exec", {"argv": ["seq", "1", "100000"]})
        assert client.wait(job.id, timeout=60).state == "DONE"
        lines = client.logs(job.id)
    assert lines == [str(n) for n in range(1, 100_001)]


def test_exec_job_with_nonzero_exit_fails(daemon: Daemon) -> None:
    """An exec job exiting 3 ends FAILED with kind exit_status, and wait exits 1."""
    job_id = daemon.semctl(
        "enqueue", "exec", "--max-attempts", "1", "--", "sh", "-c", "exit 3"
    ).out.strip()
    waited = daemon.semctl("wait", job_id)
    assert waited.code == 1
    assert "FAILED" in waited.out
    error = daemon.semctl("show", job_id, "--json").json()["error"]
    assert error == {"kind": "exit_status", "message": "exited with status 3"}


def test_failing_handler_ends_failed_with_its_message(daemon: Daemon) -> None:
    """A handler that raises ends FAILED with the exception's message; wait exits 1."""
    job_id = daemon.semctl(
        "enqueue", "FAIL", "--payload", '{"message": "disk on fire"}', "--max-attempts", "1"
    ).out.strip()
    waited = daemon.semctl("wait", job_id)
    assert waited.code == 1
    assert waited.out.strip() == f"{job_id} FAILED (exception: ValueError: disk on fire)"
    job = daemon.semctl("show", job_id, "--json").json()
    assert job["state"] == "FAILED" and job["attempts"] == 1
    assert job["error"] == {"kind": "exception", "message": "ValueError: disk on fire"}
    log = daemon.semctl("logs", job_id).out
    assert "Traceback" in log and "ValueError: disk on fire" in log


def test_failed_attempts_are_retried_up_to_max_attempts(daemon: Daemon) -> None:
    """A job that always fails runs exactly max-attempts times."""
    job_id = daemon.semctl("enqueue", "FAIL", "--max-attempts", "3", "--backoff", "0").out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    job = daemon.semctl("show", job_id, "--json").json()
    assert job["state"] == "FAILED" and job["attempts"] == 3


def test_permanent_error_is_not_retried(daemon: Daemon) -> None:
    """PermanentError fails the job after one attempt even with attempts left."""
    job_id = daemon.semctl("enqueue", "PERMANENT", "--max-attempts", "5").out.strip()
    assert daemon.semctl("wait", job_id).code == 1
    job = daemon.semctl("show", job_id, "--json").json()
    assert job["attempts"] == 1
    assert job["error"]["message"] == "this input can never work"


def test_hundred_jobs_all_run_spread_over_both_workers(daemon: Daemon) -> None:
    """100 jobs enqueued in one batch all end DONE, and both workers ran some of them."""
    with daemon.client() as client:
        jobs = client.enqueue_many([{"type": "WHO"} for _ in range(100)])
        assert len({job.id for job in jobs}) == 100
        done = client.wait_many([job.id for job in jobs], timeout=60)
    assert all(job.state == "DONE" for job in done)
    pids = {job.result["pid"] for job in done}
    assert pids == daemon.worker_pids()
    counts = daemon.semctl("status", "--json").json()["counts"]
    assert counts["DONE"] == 100 and counts["QUEUED"] == 0 and counts["RUNNING"] == 0


def test_list_shows_jobs_newest_first_with_filters(daemon: Daemon) -> None:
    """list --json returns newest first and honours --state, --type and --limit."""
    with daemon.client() as client:
        ok = client.enqueue("NOOP")
        bad = client.enqueue("FAIL", max_attempts=1)
        client.wait_many([ok.id, bad.id], timeout=30)
    listed = daemon.semctl("list", "--json").json()
    assert [job["id"] for job in listed] == [bad.id, ok.id]
    assert [j["id"] for j in daemon.semctl("list", "--state", "failed", "--json").json()] == [
        bad.id
    ]
    assert [j["id"] for j in daemon.semctl("list", "--type", "NOOP", "--json").json()] == [ok.id]
    assert len(daemon.semctl("list", "--limit", "1", "--json").json()) == 1
    table = daemon.semctl("list")
    assert table.code == 0 and "FAILED" in table.out and "NOOP" in table.out
