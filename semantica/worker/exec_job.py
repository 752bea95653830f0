"""The built-in ``exec`` job type: run a command, its output into the job log.

Payload: ``{"argv": [str, ...], "cwd"?: str, "env"?: {str: str}, "inherit_env"?:
bool}``; ``env`` is added to the worker's environment, or with ``inherit_env``
false is the whole environment (``semctl enqueue exec`` sends the caller's).
Exit status 0 is success (the result is
``{"exit_status": 0}``); anything else fails the attempt. The job ends when
the command exits, with the output it wrote, even if something it started
in the background still holds its output pipe.

The command runs in a session (and so a process group) of its own. When the
job is stopped (cancel, timeout, drain, the worker shutting down) the whole
group gets SIGTERM, then SIGKILL after a grace period; what it writes until it
exits still goes to the job log. What the command leaves
running when it exits, in its group or not, the worker ends with the job
(:mod:`semantica.worker.containment`; ``started`` tells it the group).
"""

from __future__ import annotations

import fcntl
import functools
import math
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from semantica.errors import PermanentError
from semantica.limits import LOG_LINE_MAX, note
from semantica.models import exec_payload_problem

#: How long a stopped command's process group has between SIGTERM and SIGKILL.
KILL_GRACE = 5.0
# Output is read in pieces of this many bytes, at most as many lines.
_CHUNK = 16384


class ExecFailed(Exception):
    """The command ran and exited unsuccessfully."""


class InvalidPayload(PermanentError):
    """The payload does not describe a job this handler can run; retrying cannot help."""


def parse_payload(payload: Any) -> tuple[list[str], str | None, dict[str, str] | None]:
    """Check an exec payload; InvalidPayload with the reason if it is malformed.

    Returns the command, its directory, and its whole environment (None: the worker's).

    Enqueue refuses such payloads already; a job stored before that rule (or
    written to the database by hand) still fails here, once, with the reason.
    """
    problem = exec_payload_problem(payload)
    if problem is not None:
        raise InvalidPayload(problem)
    env = payload.get("env")
    if not payload.get("inherit_env", True):
        return payload["argv"], payload.get("cwd"), dict(env or {})
    return payload["argv"], payload.get("cwd"), {**os.environ, **env} if env else None


async def run_exec(
    payload: Any,
    log: Callable[[str], None],
    started: Callable[[trio.Process], Awaitable[None]] | None = None,
    grace: Callable[[], float] = lambda: KILL_GRACE,
    room: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Run the command in ``payload``, sending each output line to ``log``.

    ``started`` is told the command's process once it runs (its pid is its
    process group's id: the command leads a group of its own); ``grace``
    says, when the job is stopped, how long the group gets between SIGTERM
    and SIGKILL; ``room``, awaited after each piece of output, returns once
    ``log`` may take more (the command meanwhile waits on its pipe: a command
    that writes faster than its log is sent loses nothing).

    Raises:
        InvalidPayload: the payload is malformed.
        PermanentError: the command cannot be started.
        ExecFailed: the command exited non-zero or was killed by a signal.

    Cancellation: the command's process group is terminated (SIGTERM, then
    SIGKILL after ``grace()`` seconds) before the cancellation propagates; what
    the command writes until it exits, and what is in its pipe then, still goes
    to ``log``.
    """
    argv, cwd, env = parse_payload(payload)
    try:
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        if cwd is not None and not await trio.Path(cwd).is_dir():
            # The error names the command, but it is the directory that is missing.
            raise PermanentError(f"cannot start {argv[0]!r}: no directory {cwd!r}") from None
        raise PermanentError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    stdout = process.stdout
    assert isinstance(stdout, trio.lowlevel.FdStream)  # (a pipe, asked for above)
    output = _Output(stdout, log)
    try:
        if started is not None:
            await started(process)
        await output.until(process.wait, room)
    except BaseException:
        # Stopped (cancel, timeout, drain): what the command writes as it stops, until
        # it exits, is its job's last words. The output is read on meanwhile (a command
        # blocked on a full pipe could not exit), with the log's backpressure until the
        # grace is over, and without it from then on: nothing then waits on a log that
        # is not being sent (the supervisor gone), and the log keeps the end.
        with trio.CancelScope(shield=True):
            grace_s = grace()
            until = trio.current_time() + grace_s
            await output.until(functools.partial(terminate_group, process, grace_s), room, until)
        raise
    finally:
        # Whatever the command left behind now writes to a closed pipe.
        with trio.CancelScope(shield=True):
            await stdout.aclose()
    status = process.returncode
    assert status is not None  # (it has exited)
    if status == 0:
        return {"exit_status": 0}
    if status < 0:
        raise ExecFailed(f"killed by signal {signal.Signals(-status).name}")
    raise ExecFailed(f"exited with status {status}")


class _Output:
    """The command's output on its way to ``log``, line by line.

    Read until the command exits, not until the output's EOF: a process the
    command left running in the background (``cmd &``) holds the pipe open for
    as long as it lives. Once the command has exited, all it wrote is in the
    pipe: that is taken, and no more.
    """

    def __init__(self, stream: trio.lowlevel.FdStream, log: Callable[[str], None]) -> None:
        self._stream = stream
        # (One for the whole run: a line the command had begun when it was stopped
        # is completed by what it writes as it stops.)
        self._lines = _Lines(log)
        self._rest = b""  # taken from the pipe after the exit, not yet fed to the log

    async def until(
        self,
        ended: Callable[[], Awaitable[object]],
        room: Callable[[], Awaitable[None]] | None,
        room_until: float = math.inf,
    ) -> None:
        """Send the output to the log until ``ended()`` returns (the command has exited),
        then what waits in the pipe. ``room`` is awaited after each piece (see run_exec),
        but not past the trio time ``room_until``. Called again after a cancellation, it
        goes on where that left off."""

        async def feed(chunk: bytes) -> None:
            self._lines.feed(chunk)
            if room is not None:
                with trio.move_on_at(room_until):
                    await room()

        async def pump() -> None:
            while chunk := await self._stream.receive_some(_CHUNK):
                await feed(chunk)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            await ended()
            nursery.cancel_scope.cancel()  # (a cancelled receive has read nothing)
        self._rest += _buffered(self._stream.fileno())
        while self._rest:
            chunk, self._rest = self._rest[:_CHUNK], self._rest[_CHUNK:]
            await feed(chunk)
        self._lines.end()


class _Lines:
    """Output bytes to log lines, split at newlines. A line over LOG_LINE_MAX keeps its
    beginning and a note of its size: the rest is counted as it streams by, never held."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self._head = bytearray()  # the beginning of the current line, at most LOG_LINE_MAX
        self._size = 0  # the current line's length so far

    def feed(self, chunk: bytes) -> None:
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            if not self._size and len(line) <= LOG_LINE_MAX:  # the usual: a whole line
                self._log(line.decode("utf-8", "replace"))
            else:
                self._more(line)
                self._emit()
        self._more(rest)

    def end(self) -> None:
        if self._size:
            self._emit()

    def _more(self, piece: bytes) -> None:
        self._size += len(piece)
        room = LOG_LINE_MAX - len(self._head)
        if room > 0:
            self._head.extend(piece[:room])

    def _emit(self) -> None:
        self._log(_line(bytes(self._head), self._size))
        self._head.clear()
        self._size = 0


def _line(head: bytes, size: int) -> str:
    """A line of output from its first bytes and its whole length."""
    text = head.decode("utf-8", "replace")
    if size <= LOG_LINE_MAX:
        return text  # (the log buffer cuts it if decoding grew it past the cap)
    end = note("log line", LOG_LINE_MAX, size)
    kept = text.encode()[: LOG_LINE_MAX - len(end.encode())]
    return kept.decode("utf-8", "ignore") + end


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
