"""Size caps, against the real supervisor: what one job produces is cut, never fatal.

docs/jobs.md ("Sizes") promises: a log line is at most 64 KiB, a progress
message 1 KiB, an error message 16 KiB, each cut with a note saying how big it
was; a result over 1 MiB of JSON fails the attempt as ``bad_result``.
"""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path

import pytest
from harness import Announcements, Daemon

KIB = 1024
MB70 = 70_000_000  # over the worker channel's 64 MiB frame cap

HANDLERS = ["BIG", "ASYNC_BIG"]


def _run(daemon: Daemon, type_: str, payload: dict[str, object]) -> dict[str, object]:
    """Enqueue one job that may not retry, wait for it, return it as show --json prints it."""
    out = daemon.semctl("enqueue", type_, "--max-attempts", "1", "--payload", json.dumps(payload))
    assert out.code == 0, out.err
    job_id = out.out.strip()
    daemon.semctl("wait", job_id, timeout=120)
    job: dict[str, object] = daemon.semctl("show", job_id, "--json").json()
    return job


def _utf8_size(text: str) -> int:
    return len(text.encode())


@pytest.mark.parametrize("type_", HANDLERS)
def test_a_70_mb_log_line_is_cut_and_the_job_goes_on(daemon: Daemon, type_: str) -> None:
    """ctx.log of a 70 MB line keeps its first 64 KiB and a note; the job ends DONE and
    the next line is there (it used to kill the worker: worker_lost)."""
    job = _run(daemon, type_, {"what": "log", "n": MB70})
    assert job["state"] == "DONE", job["error"]
    lines = daemon.semctl("logs", str(job["id"])).out.splitlines()
    assert lines[-1] == "after the long line"
    cut = lines[-2]
    assert cut.startswith("xxxx") and cut.endswith("… [cut: 70.0 MB log line, limit 64 KiB]")
    assert 60 * KIB < _utf8_size(cut) <= 64 * KIB


def test_a_70_mb_line_of_exec_output_is_cut_like_a_log_line(daemon: Daemon) -> None:
    """An exec command's output line is cut the same way, and its next line follows."""
    script = "head -c 70000000 /dev/zero | tr '\\0' x; echo; echo after the long line"
    out = daemon.semctl("enqueue", "exec", "--", "sh", "-c", script)
    job_id = out.out.strip()
    assert daemon.semctl("wait", job_id, timeout=120).code == 0
    lines = daemon.semctl("logs", job_id).out.splitlines()
    assert lines[-1] == "after the long line"
    assert lines[-2].startswith("xxxx")
    assert lines[-2].endswith("… [cut: 70.0 MB log line, limit 64 KiB]")
    assert _utf8_size(lines[-2]) <= 64 * KIB


@pytest.mark.parametrize("type_", HANDLERS)
def test_a_70_mb_progress_message_is_cut(
    daemon: Daemon, announcements: Announcements, short_tmp: Path, type_: str
) -> None:
    """ctx.progress with a 70 MB message shows its first 1 KiB and a note."""
    gate = str(short_tmp / "gate")
    payload = {"what": "progress", "n": MB70, "notify": str(announcements.path), "gate": gate}
    job_id = int(daemon.semctl("enqueue", type_, "--payload", json.dumps(payload)).out)
    announcements.next()
    with daemon.client() as client:
        for _ in range(3000):  # the report travels worker -> supervisor -> store
            job = client.get(job_id)
            if job.progress is not None or job.state != "RUNNING":
                break
            select.select([], [], [], 0.01)
        assert job.state == "RUNNING", job.error
        assert job.progress == 0.5
        message = job.progress_message
        assert message is not None
        assert message.startswith("pppp")
        assert message.endswith("… [cut: 70.0 MB progress message, limit 1 KiB]")
        assert _utf8_size(message) <= KIB
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"go", gate)
    assert daemon.semctl("wait", str(job_id), timeout=120).code == 0


@pytest.mark.parametrize("type_", HANDLERS)
def test_an_exception_with_a_70_mb_message_fails_the_attempt_with_a_cut_message(
    daemon: Daemon, type_: str
) -> None:
    """The error message keeps its first 16 KiB and a note; the traceback's last line, in
    the log, is cut too (this used to kill the worker: worker_lost)."""
    job = _run(daemon, type_, {"what": "error", "n": MB70})
    assert job["state"] == "FAILED"
    error = job["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "exception"
    assert error["message"].startswith("ValueError: eeee")
    assert error["message"].endswith("… [cut: 70.0 MB error message, limit 16 KiB]")
    assert _utf8_size(error["message"]) <= 16 * KIB
    lines = daemon.semctl("logs", str(job["id"])).out.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1].startswith("ValueError: eeee")
    assert lines[-1].endswith("… [cut: 70.0 MB exception message, limit 64 KiB]")


@pytest.mark.parametrize("type_", HANDLERS)
def test_an_exception_with_a_huge_traceback_is_cut(daemon: Daemon, type_: str) -> None:
    """A traceback of 200,000 lines (a message of many lines) fails the attempt with a
    cut error message, and the log keeps the start of the message, then a note."""
    job = _run(daemon, type_, {"what": "error_lines", "lines": 200_000})
    assert job["state"] == "FAILED"
    error = job["error"]
    assert isinstance(error, dict)
    assert error["kind"] == "exception"
    assert error["message"].startswith("ValueError: \nline 0\nline 1\n")
    assert error["message"].endswith(" error message, limit 16 KiB]")
    assert _utf8_size(error["message"]) <= 16 * KIB
    log = daemon.semctl("logs", str(job["id"])).out
    assert log.startswith("Traceback (most recent call last):\n")
    assert "\nValueError: \nline 0\nline 1\n" in log
    assert log.rstrip("\n").endswith(" exception message, limit 64 KiB]")
    assert _utf8_size(log) <= 70 * KIB


@pytest.mark.parametrize("type_", HANDLERS)
def test_a_result_over_1_mib_fails_as_bad_result_naming_its_size(
    daemon: Daemon, type_: str
) -> None:
    """A result cannot be cut (it is JSON): the attempt fails, saying its size and the cap."""
    job = _run(daemon, type_, {"what": "result", "n": 2_000_000})
    assert job["state"] == "FAILED"
    assert job["result"] is None
    assert job["error"] == {
        "kind": "bad_result",
        "message": "the handler's result is 2,000,002 bytes of JSON, over the 1 MiB limit; "
        "write large output to a file or the job log",
    }
