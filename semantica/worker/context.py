"""The context a handler receives: who the job is, its log, and whether to stop.

``ctx.log()`` may be called from the trio thread (async handlers, exec output)
or from the thread a plain handler runs in; either way the line lands in the
job's :class:`LogBuffer`, in call order, and is sent to the supervisor before
the attempt's end is reported.

Sizes are bounded here, before anything reaches the channel (see
:mod:`semantica.limits`): a log line is cut to ``LOG_LINE_MAX``, a progress
message to ``PROGRESS_MESSAGE_MAX``, and the lines waiting to be sent to
``MAX_PENDING_LINES`` lines and ``MAX_PENDING_BYTES`` bytes, so no frame of
lines can pass the channel's cap.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from semantica.limits import LOG_LINE_MAX, MIB, PROGRESS_MESSAGE_MAX, cut, utf8_size

# A handler that logs faster than the supervisor takes lines loses its oldest
# pending lines, counted, rather than the worker growing without bound. The
# bytes are capped too (50,000 lines of 64 KiB would be a 3 GiB frame); the
# supervisor keeps only the end of a job's log anyway (1 MiB by default).
MAX_PENDING_LINES = 50_000
MAX_PENDING_BYTES = 4 * MIB
# An exec command's output is read only while fewer lines than this wait (see
# LogBuffer.room): a chatty command waits on its pipe instead of losing lines.
# Far enough under the caps above that a read of output never reaches them.
ROOM_LINES = 20_000
ROOM_BYTES = 2 * MIB


class _FedFromAnyThread:
    """State that handlers feed from any thread and the trio side reads.

    ``notify`` is called in the trio thread after each change. ``trio_thread``
    is the trio thread's id (default: the creating thread's, which must then
    be the trio thread).
    """

    def __init__(
        self,
        token: trio.lowlevel.TrioToken,
        notify: Callable[[], None] = lambda: None,
        trio_thread: int | None = None,
    ) -> None:
        self._token = token
        self._notify = notify
        self._trio_thread = threading.get_ident() if trio_thread is None else trio_thread
        self._setup()

    def _setup(self) -> None:
        """Set up the subclass's own state."""

    def _in_trio(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in the trio thread: now if this is it, else soon, in call order."""
        if threading.get_ident() == self._trio_thread:
            fn(*args)
        else:
            self._token.run_sync_soon(fn, *args)


class LogBuffer(_FedFromAnyThread):
    """Lines waiting to be sent, filled from any thread, emptied by the trio side."""

    def _setup(self) -> None:
        # Full, it drops the oldest lines: a job's log keeps its end (the error,
        # usually), as the supervisor's capped log file does.
        self._lines: deque[tuple[str, int]] = deque()  # (line, its size in bytes)
        self._bytes = 0
        self._dropped = 0
        # Made only when an exec job's reader waits for room (most jobs never do: a
        # short job's buffer costs no event).
        self._taken: trio.Event | None = None

    async def room(self) -> None:
        """Wait until few enough lines wait to be sent (``ROOM_LINES``, ``ROOM_BYTES``).

        For output that can wait (an exec command's pipe): read no more until
        the supervisor has taken what is pending, and nothing is dropped. Call
        in the trio thread.
        """
        while len(self._lines) >= ROOM_LINES or self._bytes >= ROOM_BYTES:
            if self._taken is None:
                self._taken = trio.Event()
            await self._taken.wait()

    def add(self, line: str) -> None:
        """Queue a line, cut to LOG_LINE_MAX; safe from any thread."""
        # Cut in the caller's thread: a handler's 70 MB line is let go at once.
        line = cut(line, LOG_LINE_MAX, "log line")
        self._in_trio(self._add, line)

    def _add(self, line: str) -> None:
        size = utf8_size(line)
        self._lines.append((line, size))
        self._bytes += size
        while len(self._lines) > MAX_PENDING_LINES or self._bytes > MAX_PENDING_BYTES:
            _, gone = self._lines.popleft()
            self._bytes -= gone
            self._dropped += 1
        self._notify()

    def take(self) -> list[str]:
        """Every pending line (with a note of dropped ones), oldest first; empties the buffer."""
        lines = [line for line, _ in self._lines]
        self._lines.clear()
        self._bytes = 0
        if self._dropped:
            note = f"[semantica: {self._dropped} earlier log lines dropped: logging too fast]"
            lines.insert(0, note)
            self._dropped = 0
        if self._taken is not None:
            self._taken.set()
            self._taken = None
        return lines


class ProgressSlot(_FedFromAnyThread):
    """The latest progress a handler reported, set from any thread, sent by the trio side."""

    def _setup(self) -> None:
        self.latest: tuple[float, str] = (0.0, "")
        self.changed = False  # set on each report (trio thread); the sender clears it

    def report(self, fraction: float, message: str) -> None:
        """Record progress; safe from any thread."""
        self._in_trio(self._set, fraction, message)

    def _set(self, fraction: float, message: str) -> None:
        self.latest = (fraction, message)
        self.changed = True
        self._notify()


class JobContext:
    """What a handler is given besides its payload.

    Attributes:
        job_id: the job's id.
        type: the job's type.
        attempt: 1 on the first run, 2 on the first retry, ...
        max_attempts: the job's attempt budget.
    """

    def __init__(
        self,
        job_id: int,
        type: str,
        attempt: int,
        max_attempts: int,
        logs: LogBuffer,
        report_progress: Callable[[float, str], None] = lambda fraction, message: None,
    ) -> None:
        self.job_id = job_id
        self.type = type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self._logs = logs
        self._report_progress = report_progress
        # A plain flag, not a threading.Event: set once, read from any thread (an
        # attribute store is atomic), and an Event per job (a lock and a condition)
        # costs more than a short job's other bookkeeping.
        self._cancelled = False

    def log(self, message: str, **fields: Any) -> None:
        """Append a line to the job's log: the message, then ``key=value`` for each field.

        A line over 64 KiB is cut (its beginning and a note are kept).
        """
        if fields:
            message = message + " " + " ".join(f"{key}={value}" for key, value in fields.items())
        self._logs.add(message)

    def progress(self, fraction: float, message: str = "") -> None:
        """Say how far the job has got (0.0 to 1.0); ``semctl show`` and ``top`` show it.

        Cheap to call often: the worker sends at most a couple of updates a
        second, always the latest. A message over 1 KiB is cut.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be between 0.0 and 1.0, got {fraction}")
        message = cut(str(message), PROGRESS_MESSAGE_MAX, "progress message")
        self._report_progress(float(fraction), message)

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop; a blocking handler should return soon."""
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True
