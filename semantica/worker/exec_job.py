"""The built-in ``exec`` job type: run a command, its output into the job log.

Payload: ``{"argv": [str, ...], "cwd"?: str, "env"?: {str: str}}``; ``env`` is
added to the worker's environment. Exit status 0 is success (the result is
``{"exit_status": 0}``); anything else fails the attempt. The job ends when
the command exits, with the output it wrote, even if something it started
in the background still holds its output pipe.

The command runs in a session (and so a process group) of its own. When the
job is stopped (cancel, timeout, drain, the worker shutting down) the whole
group gets SIGTERM, then SIGKILL after a grace period. What the command leaves
running when it exits, in its group or not, the worker ends with the job
(:mod:`semantica.worker.containment`; ``started`` tells it the group).
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from semantica.errors import PermanentError
from semantica.models import exec_payload_problem

#: How long a stopped command's process group has between SIGTERM and SIGKILL.
KILL_GRACE = 5.0
_MAX_LINE = 64 * 1024
_CHUNK = 65536


class ExecFailed(Exception):
    """The command ran and exited unsuccessfully."""


class InvalidPayload(PermanentError):
    """The payload does not describe a job this handler can run; retrying cannot help."""


def parse_payload(payload: Any) -> tuple[list[str], str | None, dict[str, str] | None]:
    """Check an exec payload; InvalidPayload with the reason if it is malformed.

    Enqueue refuses such payloads already; a job stored before that rule (or
    written to the database by hand) still fails here, once, with the reason.
    """
    problem = exec_payload_problem(payload)
    if problem is not None:
        raise InvalidPayload(problem)
    return payload["argv"], payload.get("cwd"), payload.get("env")


async def run_exec(
    payload: Any,
    log: Callable[[str], None],
    started: Callable[[int], Awaitable[None]] | None = None,
    grace: Callable[[], float] = lambda: KILL_GRACE,
) -> dict[str, int]:
    """Run the command in ``payload``, sending each output line to ``log``.

    ``started`` is told the command's process group id once it runs; ``grace``
    says, when the job is stopped, how long the group gets between SIGTERM
    and SIGKILL.

    Raises:
        InvalidPayload: the payload is malformed.
        PermanentError: the command cannot be started.
        ExecFailed: the command exited non-zero or was killed by a signal.

    Cancellation: the command's process group is terminated (SIGTERM, then
    SIGKILL after ``grace()`` seconds) before the cancellation propagates.
    """
    argv, cwd, env = parse_payload(payload)
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            start_new_session=True,
        )
    except OSError as exc:
        if cwd is not None and not await trio.Path(cwd).is_dir():
            # The error names the command, but it is the directory that is missing.
            raise PermanentError(f"cannot start {argv[0]!r}: no directory {cwd!r}") from None
        raise PermanentError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    stdout = process.stdout
    assert isinstance(stdout, trio.lowlevel.FdStream)  # (a pipe, asked for above)
    try:
        if started is not None:
            await started(process.pid)
        status = await _output_until_exit(process, stdout, log)
    except BaseException:
        with trio.CancelScope(shield=True):
            await terminate_group(process, grace())
        raise
    finally:
        # Whatever the command left behind now writes to a closed pipe.
        with trio.CancelScope(shield=True):
            await stdout.aclose()
    if status == 0:
        return {"exit_status": 0}
    if status < 0:
        raise ExecFailed(f"killed by signal {signal.Signals(-status).name}")
    raise ExecFailed(f"exited with status {status}")


async def _output_until_exit(
    process: trio.Process, stream: trio.lowlevel.FdStream, log: Callable[[str], None]
) -> int:
    """Send the command's output to ``log`` until the command exits; return its status.

    Not until the output's EOF: a process the command left running in the
    background (``cmd &``) holds the pipe open for as long as it lives. Once the
    command has exited, all it wrote is in the pipe: that is taken, and no more.
    """
    lines = _Lines(log)

    async def pump() -> None:
        while chunk := await stream.receive_some(_CHUNK):
            lines.feed(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        status = await process.wait()
        nursery.cancel_scope.cancel()  # (a cancelled receive has read nothing)
    lines.feed(_buffered(stream.fileno()))
    lines.end()
    return status


class _Lines:
    """Output bytes to log lines: split at newlines; a line past _MAX_LINE is cut there."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._log(line.decode("utf-8", "replace"))
        if len(self._partial) > _MAX_LINE:
            self._log(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def end(self) -> None:
        if self._partial:
            self._log(self._partial.decode("utf-8", "replace"))
            self._partial = b""


def _buffered(fd: int) -> bytes:
    """What waits in the pipe ``fd`` now, without waiting for more (it is non-blocking)."""
    size = int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])
    chunks = []
    while size > 0:
        try:
            chunk = os.read(fd, min(size, _CHUNK))
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


async def terminate_group(process: trio.Process, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process's group, wait up to ``grace`` seconds, then SIGKILL it."""
    _kill_group(process.pid, signal.SIGTERM)
    with trio.move_on_after(grace):
        await process.wait()
        return
    _kill_group(process.pid, signal.SIGKILL)
    await process.wait()


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
