"""The worker's job runner, driven in-process over a socket pair as the supervisor would."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest
import trio
import trio.lowlevel

from semantica.errors import PermanentError
from semantica.framed import FramedStream
from semantica.protocol import (
    PROTOCOL_VERSION,
    CancelJob,
    FromWorker,
    GiveBack,
    GivenBack,
    JobFinished,
    JobLog,
    JobProcess,
    RunJob,
    ToWorker,
    WorkerHello,
)
from semantica.worker.containment import Containment
from semantica.worker.registry import handler
from semantica.worker.runner import EXIT_REPORT_MARGIN, Worker

TIMEOUT = 10  # generous: a hang fails the test instead of blocking the run

# The registry is a process-wide dict: these names are unique to this module.


@handler("UT_ADD")
def add(ctx: Any, payload: Any) -> Any:
    ctx.log("adding", a=payload["a"], b=payload["b"])
    ctx.log(f"job {ctx.job_id} attempt {ctx.attempt}/{ctx.max_attempts}")
    return {"sum": payload["a"] + payload["b"]}


@handler("UT_ASYNC_ADD")
async def async_add(ctx: Any, payload: Any) -> Any:
    ctx.log("first")
    await trio.lowlevel.checkpoint()
    ctx.log("second")
    return [payload["a"] + payload["b"]]


@handler("UT_VALUE_ERROR")
def value_error(ctx: Any, payload: Any) -> Any:
    ctx.log("about to fail")
    raise ValueError("bad value 17")


@handler("UT_PERMANENT")
async def permanent(ctx: Any, payload: Any) -> Any:
    raise PermanentError("this will never work")


@handler("UT_BAD_RESULT")
def bad_result(ctx: Any, payload: Any) -> Any:
    return object()


@handler("UT_RESULT_OF")
def result_of(ctx: Any, payload: Any) -> Any:
    return {"set": {1, 2}, "nan": float("nan"), "surrogate": "x \udcff"}[payload]


@handler("UT_SURROGATES")
def surrogates(ctx: Any, payload: Any) -> Any:
    ctx.log("before")
    ctx.log("x \udcff", v="\ud800")  # e.g. a file name decoded with surrogateescape
    raise ValueError("bad \udcfe")


@handler("UT_EXIT")
def exits(ctx: Any, payload: Any) -> Any:
    sys.exit(3)


@handler("UT_ASYNC_EXIT")
async def async_exits(ctx: Any, payload: Any) -> Any:
    sys.exit(4)


@handler("UT_BLOCK")
async def block(ctx: Any, payload: Any) -> Any:
    ctx.log("started")
    try:
        await trio.sleep_forever()
    finally:
        BLOCK_STOPPED.append(ctx.job_id)


BLOCK_STOPPED: list[int] = []  # ids of UT_BLOCK jobs whose handler was stopped


def _framed(sock: socket.socket, union: Any) -> FramedStream:
    return FramedStream(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), union)


@asynccontextmanager
async def running_worker(worker_class: type[Worker] = Worker) -> AsyncIterator[FramedStream]:
    """A Worker serving one end of a socket pair; yields the supervisor's end."""
    sup_sock, worker_sock = socket.socketpair()
    supervisor, worker_end = _framed(sup_sock, FromWorker), _framed(worker_sock, ToWorker)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker_class(worker_end).serve)
            with trio.fail_after(TIMEOUT):
                yield supervisor
            nursery.cancel_scope.cancel()
    finally:
        await supervisor.aclose()
        await worker_end.aclose()


async def _hello(supervisor: FramedStream) -> WorkerHello:
    msg = await supervisor.receive()
    assert isinstance(msg, WorkerHello)
    return msg


async def run_job(
    supervisor: FramedStream, type: str, payload: Any, *, lease: int = 5, raw: bytes | None = None
) -> tuple[list[str], JobFinished, list[Any]]:
    """Send one RunJob; return its log lines, its JobFinished and every message in order."""
    await supervisor.send(
        RunJob(
            lease=lease,
            job_id=100 + lease,
            type=type,
            payload=msgspec.json.encode(payload) if raw is None else raw,
            attempt=2,
            max_attempts=3,
        )
    )
    lines: list[str] = []
    received: list[Any] = []
    while True:
        msg = await supervisor.receive()
        received.append(msg)
        if isinstance(msg, JobLog):
            assert msg.lease == lease
            lines.extend(msg.lines)
        elif isinstance(msg, JobProcess):
            assert msg.lease == lease and msg.pgid > 0
        else:
            assert isinstance(msg, JobFinished)
            assert msg.lease == lease
            return lines, msg, received


async def test_hello_lists_the_types() -> None:
    """A worker first announces its protocol version, pid and job types, exec included."""
    async with running_worker() as supervisor:
        hello = await _hello(supervisor)
    assert hello.version == PROTOCOL_VERSION
    assert hello.pid > 0
    assert {"exec", "UT_ADD", "UT_ASYNC_ADD"} <= set(hello.types)
    assert hello.types == sorted(hello.types)


async def test_sync_handler_logs_then_finishes_with_result() -> None:
    """A plain handler's log lines arrive in order before the result of the job."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, received = await run_job(supervisor, "UT_ADD", {"a": 2, "b": 3})
    assert lines == ["adding a=2 b=3", "job 105 attempt 2/3"]
    assert isinstance(received[-1], JobFinished)
    assert finished.error is None
    assert finished.result is not None
    assert msgspec.json.decode(finished.result) == {"sum": 5}


async def test_async_handler_logs_then_finishes_with_result() -> None:
    """An async handler's log lines arrive in order before the result of the job."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, received = await run_job(supervisor, "UT_ASYNC_ADD", {"a": 1, "b": 1})
    assert lines == ["first", "second"]
    assert isinstance(received[-1], JobFinished)
    assert finished.error is None
    assert finished.result is not None
    assert msgspec.json.decode(finished.result) == [2]


async def test_worker_runs_jobs_one_after_another() -> None:
    """One worker runs several jobs in turn, each reported under its own lease."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        for lease in (1, 2, 3):
            _, finished, _ = await run_job(supervisor, "UT_ADD", {"a": lease, "b": 0}, lease=lease)
            assert finished.result is not None
            assert msgspec.json.decode(finished.result) == {"sum": lease}


async def test_exception_fails_the_attempt_with_traceback_in_log() -> None:
    """A handler that raises fails this attempt (retryable) and its traceback is in the log."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(supervisor, "UT_VALUE_ERROR", None)
    assert finished.error is not None
    assert finished.error.kind == "exception"
    assert "ValueError" in finished.error.message and "bad value 17" in finished.error.message
    assert finished.permanent is False
    assert finished.result is None
    assert lines[0] == "about to fail"
    assert any(line.startswith("Traceback") for line in lines)
    assert any("value_error" in line for line in lines)
    assert lines[-1] == "ValueError: bad value 17"


async def test_permanent_error_is_not_retried() -> None:
    """A handler raising PermanentError fails the job with no retry."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "UT_PERMANENT", {})
    assert finished.error is not None
    assert finished.error.kind == "exception"
    assert "this will never work" in finished.error.message
    assert finished.permanent is True


async def test_unknown_type_fails_permanently() -> None:
    """A job type no handler claims fails at once, permanently, naming the type."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "UT_NOBODY_HANDLES_THIS", {})
    assert finished.error is not None
    assert finished.error.kind == "unknown_type"
    assert "UT_NOBODY_HANDLES_THIS" in finished.error.message
    assert finished.permanent is True


async def test_non_json_result_fails_as_bad_result() -> None:
    """A handler returning something that is not JSON fails with kind bad_result."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "UT_BAD_RESULT", {})
    assert finished.error is not None
    assert finished.error.kind == "bad_result"
    assert finished.result is None


async def test_exec_output_and_exit_status() -> None:
    """An exec job's stdout and stderr go to the log; a non-zero exit fails with its status."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(
            supervisor, "exec", {"argv": ["sh", "-c", "echo a; echo b >&2; exit 3"]}
        )
    assert lines == ["a", "b"]
    assert finished.error is not None
    assert finished.error.kind == "exit_status"
    assert "status 3" in finished.error.message
    assert finished.permanent is False


async def test_exec_success() -> None:
    """An exec job that exits 0 is a success with the exit status as its result."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(
            supervisor, "exec", {"argv": ["sh", "-c", 'printf "x\\ny"']}
        )
    assert lines == ["x", "y"]
    assert finished.error is None
    assert finished.result is not None
    assert msgspec.json.decode(finished.result) == {"exit_status": 0}


async def test_exec_ends_when_its_command_exits_not_when_its_background_child_does() -> None:
    """``sh -c 'sleep 60 & exit 0'``: the job ends when sh exits, with all it wrote, though
    the background sleep still holds the output pipe; the sleep is ended with the job."""
    script = "echo before; sleep 60 & echo $!; echo after; exit 0"
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(supervisor, "exec", {"argv": ["sh", "-c", script]})
    assert finished.error is None
    assert finished.result is not None
    assert msgspec.json.decode(finished.result) == {"exit_status": 0}
    assert lines[0] == "before" and lines[2] == "after", lines
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(int(lines[1])).wait(timeout=TIMEOUT)  # TimeoutExpired: it runs on


class ContainingWorker(Worker):
    """A worker that says when it starts ending what a job left running."""

    containing: trio.Event

    async def _contain(self, attempt: Any) -> None:
        ContainingWorker.containing.set()
        await super()._contain(attempt)


async def test_a_stop_while_a_jobs_leftovers_are_ended_only_hurries_them() -> None:
    """A command exits 0 leaving a child that ignores SIGTERM: the job's end waits for
    the grace (5 s) to kill it. A timeout that comes meanwhile cuts the wait to its own
    grace, and the job still ends as its command did: a success."""
    script = "trap '' TERM; sleep 60 & echo started; exit 0"
    ContainingWorker.containing = trio.Event()
    async with running_worker(ContainingWorker) as supervisor:
        await _hello(supervisor)
        await supervisor.send(_run(7, "exec", {"argv": ["sh", "-c", script]}))
        await ContainingWorker.containing.wait()
        began = time.monotonic()
        await supervisor.send(CancelJob(lease=7, kind="timeout", message="late", grace=0.2))
        while not isinstance(msg := await supervisor.receive(), JobFinished):
            pass
        took = time.monotonic() - began
    assert msg.error is None, msg.error
    assert msgspec.json.decode(msg.result) == {"exit_status": 0}
    assert took < 4, f"the end came {took:.1f} s after the stop"


class LingeringWorker(Worker):
    """A worker whose job of lease 1, once what it left running is ended, stays the
    running job until the test says (the moment a late stop can still come for it)."""

    contained: trio.Event
    stopped: trio.Event
    go_on: trio.Event

    async def _contain(self, attempt: Any) -> None:
        await super()._contain(attempt)
        if attempt.job.lease == 1:
            LingeringWorker.contained.set()
            await LingeringWorker.go_on.wait()

    async def _stop(self, request: CancelJob) -> None:
        await super()._stop(request)
        LingeringWorker.stopped.set()


async def test_a_stop_that_comes_after_its_job_was_contained_does_not_hurry_the_next_job(
    tmp_path: Path,
) -> None:
    """A timeout (grace 0) comes for a job whose leftovers are already ended, before its
    report: the next job's leftovers still get SIGTERM and their grace, not an
    immediate SIGKILL (the late stop's deadline used to carry over to the next job)."""
    ready, termed = tmp_path / "ready", tmp_path / "termed"
    child = (
        f"trap 'echo term > {shlex.quote(str(termed))}; exit 0' TERM; "
        f"echo ready > {shlex.quote(str(ready))}; while :; do sleep 0.01; done"
    )
    # (Its output goes elsewhere: the job's pipe is closed once the command has exited.)
    command = (
        f"sh -c {shlex.quote(child)} >/dev/null 2>&1 & "
        f"while [ ! -s {shlex.quote(str(ready))} ]; do sleep 0.01; done"
    )
    LingeringWorker.contained, LingeringWorker.stopped = trio.Event(), trio.Event()
    LingeringWorker.go_on = trio.Event()
    async with running_worker(LingeringWorker) as supervisor:
        await _hello(supervisor)
        await supervisor.send(_run(1, "UT_ASYNC_ADD", {"a": 1, "b": 2}))
        await LingeringWorker.contained.wait()
        await supervisor.send(CancelJob(lease=1, kind="timeout", message="late", grace=0.0))
        await LingeringWorker.stopped.wait()
        LingeringWorker.go_on.set()
        while not isinstance(first := await supervisor.receive(), JobFinished):
            pass
        assert first.lease == 1 and first.error is None, first
        _, second, _ = await run_job(supervisor, "exec", {"argv": ["sh", "-c", command]}, lease=2)
    assert second.error is None, second.error
    assert termed.exists(), "the next job's leftover was SIGKILLed without a SIGTERM first"


async def test_exec_env_and_cwd(tmp_path: Path) -> None:
    """An exec job runs in the cwd given, with the env given added to the worker's."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(
            supervisor,
            "exec",
            {
                "argv": ["sh", "-c", 'pwd; echo "$UT_VAR"'],
                "cwd": str(tmp_path),
                "env": {"UT_VAR": "v1"},
            },
        )
    assert finished.error is None
    assert lines == [str(tmp_path), "v1"]


async def test_exec_env_without_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """With inherit_env false the env given is the command's whole environment."""
    monkeypatch.setenv("UT_WORKER_ONLY", "w")
    payload = {
        "argv": ["sh", "-c", 'echo "${UT_WORKER_ONLY-unset} $UT_VAR"'],
        "env": {"UT_VAR": "v1", "PATH": os.environ["PATH"]},
        "inherit_env": False,
    }
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(supervisor, "exec", payload)
    assert finished.error is None
    assert lines == ["unset v1"]


async def test_exec_malformed_payload_fails_permanently() -> None:
    """An exec job without a proper argv fails without retry, saying what is wrong."""
    payloads: list[Any] = [
        {},
        {"argv": "ls -l"},
        {"argv": []},
        {"argv": ["ls", 3]},
        ["ls"],
        {"argv": ["ls"], "surprise": 1},
        {"argv": ["ls"], "inherit_env": "no"},
    ]
    async with running_worker() as supervisor:
        await _hello(supervisor)
        for lease, payload in enumerate(payloads, start=1):
            _, finished, _ = await run_job(supervisor, "exec", payload, lease=lease)
            assert finished.error is not None, payload
            assert finished.permanent is True, payload
            assert "exec payload" in finished.error.message, payload


async def test_exec_malformed_payload_is_a_bad_payload() -> None:
    """An exec job without argv is reported with the error kind bad_payload."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "exec", {})
    assert finished.error is not None
    assert finished.error.kind == "bad_payload"


async def test_exec_missing_command_fails_permanently() -> None:
    """An exec job whose command does not exist fails without retry, naming the command."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(
            supervisor, "exec", {"argv": ["semantica-ut-no-such-command", "x"]}
        )
    assert finished.error is not None
    assert finished.permanent is True
    assert "semantica-ut-no-such-command" in finished.error.message


async def test_exec_in_a_directory_that_is_gone_says_so(tmp_path: Path) -> None:
    """The working directory was deleted after enqueue: the error names it, not only
    the command (which exists)."""
    gone = tmp_path / "deleted"
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "exec", {"argv": ["true"], "cwd": str(gone)})
    assert finished.error is not None and finished.permanent is True
    assert f"no directory {str(gone)!r}" in finished.error.message


@pytest.mark.parametrize("kind", ["set", "nan", "surrogate"])
async def test_a_result_that_would_be_stored_changed_is_a_bad_result(kind: str) -> None:
    """A set would come back as a list and NaN as null, and a lone surrogate cannot be stored
    (it used to kill the worker): bad_result, not DONE with another value."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, "UT_RESULT_OF", kind)
    assert finished.error is not None and finished.error.kind == "bad_result"
    assert finished.permanent is True and finished.result is None


async def test_lone_surrogates_in_logs_and_errors_are_escaped_not_fatal() -> None:
    """Log lines and an error with lone surrogates used to fail the worker's
    frame (and kill it, losing the job's log): they arrive escaped, and the job just fails."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        lines, finished, _ = await run_job(supervisor, "UT_SURROGATES", None)
    assert lines[:2] == ["before", "x \\udcff v=\\ud800"]
    assert finished.error is not None and finished.error.kind == "exception"
    assert finished.error.message == "ValueError: bad \\udcfe"


@pytest.mark.parametrize(("type_", "code"), [("UT_EXIT", 3), ("UT_ASYNC_EXIT", 4)])
async def test_sys_exit_in_a_handler_fails_the_attempt_and_the_worker_goes_on(
    type_: str, code: int
) -> None:
    """sys.exit() in a handler used to end the worker (worker_lost, and an exception group
    in the supervisor's log): it fails the attempt, which is retried, and the worker
    runs the next job."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        _, finished, _ = await run_job(supervisor, type_, None)
        _, after, _ = await run_job(supervisor, "UT_ADD", {"a": 1, "b": 2}, lease=6)
    assert finished.error is not None and finished.error.kind == "exception"
    assert finished.error.message == f"the handler called sys.exit({code})"
    assert finished.permanent is False
    assert after.error is None and after.result == b'{"sum":3}'


async def test_serve_returns_when_supervisor_closes() -> None:
    """When the supervisor's end closes, the worker's serve() returns."""
    sup_sock, worker_sock = socket.socketpair()
    supervisor, worker_end = _framed(sup_sock, FromWorker), _framed(worker_sock, ToWorker)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(Worker(worker_end).serve)
                await _hello(supervisor)
                await supervisor.aclose()
            # the nursery exits only because serve() returned
    finally:
        await worker_end.aclose()


async def test_supervisor_closing_stops_the_running_job() -> None:
    """When the supervisor goes away mid-job, the worker stops the job and returns."""
    sup_sock, worker_sock = socket.socketpair()
    supervisor, worker_end = _framed(sup_sock, FromWorker), _framed(worker_sock, ToWorker)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(Worker(worker_end).serve)
                await _hello(supervisor)
                await supervisor.send(
                    RunJob(
                        lease=1,
                        job_id=77,
                        type="UT_BLOCK",
                        payload=b"null",
                        attempt=1,
                        max_attempts=1,
                    )
                )
                log = await supervisor.receive()
                assert isinstance(log, JobLog) and log.lines == ["started"]
                assert 77 not in BLOCK_STOPPED
                await supervisor.aclose()
        assert 77 in BLOCK_STOPPED
    finally:
        await worker_end.aclose()


@handler("UT_WAIT_FOR_CANCEL")
def wait_for_cancel(ctx: Any, payload: Any) -> Any:
    """A plain handler that runs until it is asked to stop."""
    ctx.log("waiting")
    while not ctx.cancelled:
        time.sleep(0.001)
    return "stopped"


def _run(lease: int, type: str, payload: Any) -> RunJob:
    return RunJob(
        lease=lease,
        job_id=100 + lease,
        type=type,
        payload=msgspec.json.encode(payload),
        attempt=1,
        max_attempts=3,
    )


async def test_prefetched_plain_jobs_report_in_order_each_with_its_own_lines() -> None:
    """Several plain jobs handed over at once: each job's lines, then its end, job by job."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        await supervisor.send_many(
            [_run(lease, "UT_ADD", {"a": lease, "b": 1}) for lease in (1, 2, 3)]
        )
        received: list[Any] = []
        while sum(isinstance(msg, JobFinished) for msg in received) < 3:
            received.append(await supervisor.receive())
    ends = [msg for msg in received if isinstance(msg, JobFinished)]
    assert [end.lease for end in ends] == [1, 2, 3]
    for lease, end in zip((1, 2, 3), ends, strict=True):
        # A job's lines may come in one frame or several, and the next job's may
        # come before this one's end; but all of its own come before its end.
        cut = received.index(end)
        mine = [msg for msg in received if isinstance(msg, JobLog) and msg.lease == lease]
        assert all(received.index(msg) < cut for msg in mine)
        lines = [line for msg in mine for line in msg.lines]
        assert lines == [f"adding a={lease} b=1", f"job {100 + lease} attempt 1/3"]
        assert msgspec.json.decode(end.result) == {"sum": lease + 1}
        assert end.run_s > 0


async def test_stopping_a_plain_job_does_not_stop_the_ones_behind_it() -> None:
    """A cancel of the running plain job ends it as cancelled; the next job still runs."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        await supervisor.send_many(
            [_run(1, "UT_WAIT_FOR_CANCEL", None), _run(2, "UT_ADD", {"a": 1, "b": 1})]
        )
        first = await supervisor.receive()
        assert isinstance(first, JobLog) and first.lines == ["waiting"]
        await supervisor.send(CancelJob(lease=1, kind="cancelled", message="by test", grace=5))
        ends = []
        while len(ends) < 2:
            msg = await supervisor.receive()
            if isinstance(msg, JobFinished):
                ends.append(msg)
    assert ends[0].lease == 1 and ends[0].error is not None
    assert ends[0].error.kind == "cancelled"
    assert ends[1].lease == 2 and msgspec.json.decode(ends[1].result) == {"sum": 2}


async def test_a_job_given_back_before_it_starts_is_not_run() -> None:
    """GiveBack drops the unstarted jobs named, answers with them, and runs the rest."""
    async with running_worker() as supervisor:
        await _hello(supervisor)
        await supervisor.send_many(
            [
                _run(1, "UT_WAIT_FOR_CANCEL", None),
                *(_run(n, "UT_ADD", {"a": n, "b": 0}) for n in (2, 3)),
            ]
        )
        assert isinstance(await supervisor.receive(), JobLog)  # job 1 runs
        await supervisor.send(GiveBack(leases=[1, 3]))  # 1 has started: it stays
        answer = await supervisor.receive()
        assert isinstance(answer, GivenBack) and answer.leases == [3]
        await supervisor.send(CancelJob(lease=1, kind="cancelled", message="done", grace=5))
        ends = []
        while len(ends) < 2:
            msg = await supervisor.receive()
            if isinstance(msg, JobFinished):
                ends.append(msg.lease)
    assert ends == [1, 2]


# ---------------------------------------------------------------------- the worker process
#
# ``python -m semantica.worker`` itself, the test as its supervisor: what its main() does
# when it exits (the end of everything below it) is seen only in a process of its own.


@asynccontextmanager
async def worker_process(
    tmp_path: Path, handlers: str, **env: str
) -> AsyncIterator[tuple[trio.Process, socket.socket, FramedStream]]:
    """A real worker with the handler module ``handlers`` (its source) on one end of a
    socket pair; yields the process, the supervisor's socket and its framed stream.
    What the worker prints goes to ``tmp_path / "worker.out"``."""
    output = _prepare(tmp_path, handlers)
    ours, theirs = socket.socketpair()
    environ = {
        **os.environ,
        "SEMANTICA_WORKER_FD": str(theirs.fileno()),
        "SEMANTICA_HANDLERS": "ut_process_handlers",
        "PYTHONPATH": str(tmp_path),
        **env,
    }
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "semantica.worker"],
            pass_fds=(theirs.fileno(),),
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    finally:
        os.close(output)
        theirs.close()
    supervisor = _framed(ours, FromWorker)
    try:
        with trio.fail_after(TIMEOUT):
            await _hello(supervisor)
        yield process, ours, supervisor
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        await supervisor.aclose()


def _prepare(tmp_path: Path, handlers: str) -> int:
    """Write the handler module; open the file for the worker's output."""
    (tmp_path / "ut_process_handlers.py").write_text(textwrap.dedent(handlers))
    return os.open(tmp_path / "worker.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pid_in(path: Path) -> int | None:
    return int(path.read_text()) if path.exists() else None  # (written whole, then renamed)


async def _read_pid(path: Path) -> psutil.Process:
    """The process whose pid a handler wrote to ``path`` (waits for it)."""
    with trio.fail_after(TIMEOUT):
        while (pid := _pid_in(path)) is None:  # noqa: ASYNC110  # a file: nothing to wait on
            await trio.sleep(0.01)
    return psutil.Process(pid)


_ORPHANS = """
    import os, time
    from pathlib import Path
    from semantica import handler

    def orphan(pids):
        # A shell's `cmd &`: once sh exits, sleep is an orphan, re-parented to the worker.
        os.system(f"sleep 300 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}")

    @handler("FLOOD")
    def flood(ctx, payload):
        orphan(payload["pids"])
        while not ctx.cancelled:
            ctx.log("x" * 1000)
            time.sleep(0.001)

    @handler("QUIET")
    def quiet(ctx, payload):
        orphan(payload["pids"])
        while not ctx.cancelled:
            time.sleep(0.001)

    @handler("RETURN_ON")
    def return_on(ctx, payload):
        orphan(payload["pids"])
        while not Path(payload["go"]).exists():
            time.sleep(0.001)
"""


async def test_a_worker_whose_supervisor_is_gone_exits_though_its_command_floods_as_it_stops(
    tmp_path: Path,
) -> None:
    """The supervisor goes away while an exec command runs; on its SIGTERM the command
    writes far more than the job's log holds unsent, and nothing sends that log any more.
    The output is read on as the command stops (its job's last words), but waits for room
    in the log only until the grace is over: the worker exits, and ends the command."""
    script = "trap 'yes | head -c 5000000; exit 1' TERM; echo begin; sleep 100 & wait"
    async with worker_process(tmp_path, "") as (process, _, supervisor):
        await supervisor.send(_run(1, "exec", {"argv": ["sh", "-c", script]}))
        while not isinstance(msg := await supervisor.receive(), JobLog):
            assert isinstance(msg, JobProcess), msg
        assert msg.lines == ["begin"]
        await supervisor.aclose()
        with trio.fail_after(TIMEOUT):
            status = await process.wait()
        assert status == 0, (tmp_path / "worker.out").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="the subreaper is Linux's")
@pytest.mark.parametrize("sending", ["log", "heartbeat", "report"])
async def test_a_send_to_a_supervisor_that_is_gone_ends_the_worker_and_its_jobs_processes(
    tmp_path: Path, sending: str
) -> None:
    """The supervisor dies as the worker sends (a log frame, a heartbeat, a report): the
    send fails (EPIPE) rather than the receive seeing EOF. The worker takes that as the
    supervisor's end, as EOF: it exits 0, quietly, and what its job started is ended.
    (It used to die of the send's exception: a traceback, and its job's processes ran on.)"""
    pids, go = tmp_path / "pids", tmp_path / "go"
    async with worker_process(tmp_path, _ORPHANS) as (process, sock, supervisor):
        type_ = {"log": "FLOOD", "heartbeat": "QUIET", "report": "RETURN_ON"}[sending]
        run = _run(1, type_, {"pids": str(pids), "go": str(go)})
        run.heartbeat = 0.05
        await supervisor.send(run)
        orphan = await _read_pid(pids)
        try:
            # The supervisor's end stops reading: the worker's next send fails with EPIPE,
            # and it never sees EOF (as when the kill lands while it writes).
            sock.shutdown(socket.SHUT_RD)
            go.touch()
            with trio.fail_after(TIMEOUT):
                status = await process.wait()
            output = (tmp_path / "worker.out").read_text()
            assert status == 0, output
            assert "Traceback" not in output, output
            with trio.fail_after(TIMEOUT):
                while _running(orphan):  # noqa: ASYNC110  # another process: nothing to wait on
                    await trio.sleep(0.01)
        finally:
            if _running(orphan):
                orphan.kill()


@handler("UT_MARK")
def mark(ctx: Any, payload: Any) -> Any:
    MARKED.append(ctx.job_id)


MARKED: list[int] = []  # ids of UT_MARK jobs that ran


class PostingWorker(Worker):
    """A worker that says when the first job's end is queued for its report."""

    posted: trio.Event

    def _post(self, attempt: Any, finished: JobFinished | None) -> None:
        super()._post(attempt, finished)
        if attempt.job.lease == 1:
            PostingWorker.posted.set()


async def test_a_worker_stopped_by_sigterm_starts_no_job_handed_over_behind_its_job() -> None:
    """SIGTERM (the end of a drain, a shutdown --now) while a plain job runs with another
    handed over behind it: the running one is stopped, and the one behind it stays not
    started (the supervisor puts it back as such, attempt not spent). It used to start
    in the handler's thread, left to itself, while the worker exited."""
    PostingWorker.posted = trio.Event()
    sup_sock, worker_sock = socket.socketpair()
    supervisor, worker_end = _framed(sup_sock, FromWorker), _framed(worker_sock, ToWorker)
    worker = PostingWorker(worker_end)
    # (Should the worker's own receiver not be there yet, this one takes the signal.)
    with trio.open_signal_receiver(signal.SIGTERM), trio.fail_after(TIMEOUT):
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.serve)
                await _hello(supervisor)
                await supervisor.send_many(
                    [_run(1, "UT_WAIT_FOR_CANCEL", None), _run(2, "UT_MARK", None)]
                )
                log = await supervisor.receive()
                assert isinstance(log, JobLog) and log.lines == ["waiting"], log
                os.kill(os.getpid(), signal.SIGTERM)
            # serve() returned; the handler's thread goes on, to the end of its job.
            await PostingWorker.posted.wait()
        finally:
            await supervisor.aclose()
            await worker_end.aclose()
    assert [job.lease for job in worker.pending] == [2], "the job behind it was taken"
    assert 102 not in MARKED, "the job behind the stopped one ran as its worker exited"


# ---------------------------------------------------------------------- shut down (SIGTERM)


@handler("UT_STOP_WORDS")
def stop_words(ctx: Any, payload: Any) -> Any:
    """A plain handler that works until asked to stop, and says so as it stops."""
    ctx.log("waiting")
    while not ctx.cancelled:
        time.sleep(0.001)
    ctx.log("saw cancel")
    return "stopped early"


@handler("UT_ASYNC_STOP_WORDS")
async def async_stop_words(ctx: Any, payload: Any) -> Any:
    ctx.log("waiting")
    try:
        await trio.sleep_forever()
    finally:
        ctx.log("async finally")


_release_deaf = threading.Event()


@handler("UT_DEAF")
def deaf(ctx: Any, payload: Any) -> Any:
    """A plain handler that ignores its stop (until the test releases it)."""
    ctx.log("waiting")
    _release_deaf.wait(timeout=60)


@asynccontextmanager
async def shut_down_worker(
    worker_class: type[Worker] = Worker, grace: float = 5.0
) -> AsyncIterator[tuple[Worker, FramedStream, trio.Event]]:
    """A Worker (cancel grace ``grace``) serving one end of a socket pair; yields it, the
    supervisor's end, and an event set once serve() has returned."""
    sup_sock, worker_sock = socket.socketpair()
    supervisor, worker_end = _framed(sup_sock, FromWorker), _framed(worker_sock, ToWorker)
    worker = worker_class(worker_end, Containment(grace, whole_tree=False))
    served = trio.Event()

    async def serve() -> None:
        await worker.serve()
        served.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            with trio.fail_after(TIMEOUT):
                await _hello(supervisor)
                yield worker, supervisor, served
            nursery.cancel_scope.cancel()
    finally:
        await supervisor.aclose()
        await worker_end.aclose()


async def _lines_until_end(supervisor: FramedStream, lease: int) -> tuple[list[str], JobFinished]:
    lines: list[str] = []
    while not isinstance(msg := await supervisor.receive(), JobFinished):
        if isinstance(msg, JobLog):
            assert msg.lease == lease
            lines.extend(msg.lines)
    assert msg.lease == lease
    return lines, msg


TRAPPING = (
    "trap 'echo got TERM; sleep 0.2; echo after sleep; exit 1' TERM; echo waiting; sleep 60 & wait"
)


@pytest.mark.parametrize(
    ("type_", "payload", "last_words"),
    [
        ("UT_STOP_WORDS", None, ["saw cancel"]),
        ("UT_ASYNC_STOP_WORDS", None, ["async finally"]),
        ("exec", {"argv": ["sh", "-c", TRAPPING]}, ["got TERM", "after sleep"]),
    ],
    ids=["plain", "async", "exec"],
)
async def test_a_worker_shut_down_stops_its_job_as_a_cancel_would_and_reports_it_last(
    type_: str, payload: Any, last_words: list[str]
) -> None:
    """What SIGTERM does (the end of a drain): the running job is stopped as a CancelJob
    would stop it, what it logs as it stops is sent, then its report: ``interrupted``,
    marked the last (the worker exits). serve() then returns, long before the grace."""
    async with shut_down_worker() as (worker, supervisor, served):
        await supervisor.send(_run(1, type_, payload))
        while not isinstance(msg := await supervisor.receive(), JobLog):
            pass
        assert msg.lines == ["waiting"]
        began = time.monotonic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.shut_down)
            lines, finished = await _lines_until_end(supervisor, 1)
            await served.wait()
            took = time.monotonic() - began
            nursery.cancel_scope.cancel()  # (its bound, should the report never go)
    assert lines == last_words
    assert finished.error is not None and finished.error.kind == "interrupted", finished
    assert finished.last
    assert took < 4, f"serve() returned {took:.1f} s after the stop"


async def test_a_worker_shut_down_while_idle_returns_at_once() -> None:
    async with shut_down_worker() as (worker, _, served):
        await worker.shut_down()
        with trio.fail_after(1):
            await served.wait()


async def test_a_job_that_ended_before_its_worker_got_sigterm_is_reported_as_it_ended(
    tmp_path: Path,
) -> None:
    """A command exited 0 leaving a child that ignores SIGTERM; then the worker gets
    SIGTERM, before it has even seen the exit: the job still ends as its command did
    (DONE), its report the last, and the worker exits 0, its job's child ended."""
    pids, go = tmp_path / "pids", tmp_path / "go"
    script = (
        f"trap '' TERM; sleep 60 & echo $! > {pids}.tmp; mv {pids}.tmp {pids}; echo started; "
        f"while [ ! -e {go} ]; do sleep 0.01; done; exit 0"
    )
    async with worker_process(tmp_path, "", SEMANTICA_CANCEL_GRACE="1") as (
        process,
        _,
        supervisor,
    ):
        await supervisor.send(_run(7, "exec", {"argv": ["sh", "-c", script]}))
        msg = await supervisor.receive()
        assert isinstance(msg, JobProcess), msg
        command = psutil.Process(msg.pgid)  # (the command leads its group)
        child = await _read_pid(pids)
        # The worker is paused while its command exits and SIGTERM comes: it wakes to
        # both at once, and the order it takes them in must not matter.
        process.send_signal(signal.SIGSTOP)
        go.touch()
        with trio.fail_after(TIMEOUT):
            while _running(command):  # noqa: ASYNC110  # another process: nothing to wait on
                await trio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
        with trio.fail_after(TIMEOUT):
            lines, finished = await _lines_until_end(supervisor, 7)
            status = await process.wait()
    assert lines == ["started", "[semantica: ended 1 process the job left running]"]
    assert finished.error is None and finished.last, finished
    assert status == 0, (tmp_path / "worker.out").read_text()
    assert not _running(child)


async def test_a_cancel_that_comes_as_the_command_exits_leaves_the_job_as_it_ended(
    tmp_path: Path,
) -> None:
    """A cancel (or a timeout) the worker reads together with its command's exit: the
    command ended on its own, so the job ends as it did (DONE), not cancelled."""
    go = tmp_path / "go"
    script = f"echo started; while [ ! -e {go} ]; do sleep 0.01; done; exit 0"
    async with worker_process(tmp_path, "") as (process, _, supervisor):
        await supervisor.send(_run(7, "exec", {"argv": ["sh", "-c", script]}))
        msg = await supervisor.receive()
        assert isinstance(msg, JobProcess), msg
        command = psutil.Process(msg.pgid)
        process.send_signal(signal.SIGSTOP)  # it wakes to the exit and the cancel at once
        go.touch()
        with trio.fail_after(TIMEOUT):
            while _running(command):  # noqa: ASYNC110  # another process: nothing to wait on
                await trio.sleep(0.01)
        await supervisor.send(CancelJob(lease=7, kind="cancelled", message="by test", grace=5))
        process.send_signal(signal.SIGCONT)
        with trio.fail_after(TIMEOUT):
            lines, finished = await _lines_until_end(supervisor, 7)
    assert lines == ["started"]
    assert finished.error is None, finished


async def test_a_plain_handler_that_ignores_the_shut_down_is_reported_within_the_grace() -> None:
    """A plain handler that ignores its stop when the worker is shut down: its report
    (``interrupted``, the last) goes once the grace is over, before the worker gives up
    on reporting (EXIT_REPORT_MARGIN later; the pool kills it a little after that)."""
    grace = 0.5
    _release_deaf.clear()
    try:
        async with shut_down_worker(grace=grace) as (worker, supervisor, served):
            await supervisor.send(_run(1, "UT_DEAF", None))
            while not isinstance(await supervisor.receive(), JobLog):
                pass
            began = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker.shut_down)
                _, finished = await _lines_until_end(supervisor, 1)
                took = time.monotonic() - began
                await served.wait()
                nursery.cancel_scope.cancel()
    finally:
        _release_deaf.set()
    assert finished.error is not None and finished.error.kind == "interrupted", finished
    assert finished.last
    assert grace <= took < grace + EXIT_REPORT_MARGIN, took
