"""The supervisor's stderr, written by a thread of its own: the event loop never waits for it.

stderr is not the supervisor's. It may be a pipe to a paused ``less``, a stuck
``tee``, a parent that never reads, or journald pushing back; a blocking write
there would freeze the event loop, and with it every client and every worker.
So the loop only queues its lines (:meth:`StderrWriter.write`, a list append
under a lock) and :class:`StderrWriter`'s thread writes them out.

A line is queued while less than :data:`QUEUE_BYTES` wait before it, whatever
its own size: so a line bigger than the whole queue still goes out to a reader
that keeps up, and the queue never holds more than that plus one line. A line
that finds the queue full is dropped and counted (:attr:`StderrWriter.dropped`,
the metric ``semantica_log_lines_dropped_total``). Once the reader has caught up, one
line says how many were dropped, where they would have been: ``N log lines
dropped``. ``daemon.log`` is written apart, directly, and keeps every line.

The thread writes as a blocking write would, whatever stderr is. Someone may
have set ``O_NONBLOCK`` on it (it is shared: a pipe another process writes
too); then a write takes part of a batch, or nothing (EAGAIN), and the thread
waits for stderr to take more (``select``) and goes on where it stopped, so
no line is torn or lost. A write that fails (the reader closed the pipe:
EPIPE) loses the rest of its batch: each line not written whole is counted
as dropped, like the others.

At exit :meth:`StderrWriter.flush` gives the queue, and the note of lines
dropped, a moment (:data:`FLUSH_AT_EXIT_S`) to go out, and no more: a reader
that never comes back does not hold up the exit either.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

#: Bytes of log lines waiting for stderr's reader past which new lines are dropped.
QUEUE_BYTES = 256 << 10
#: How long the exit waits for the queued lines to be written.
FLUSH_AT_EXIT_S = 1.0


def write_all(fd: int, data: bytes) -> int:
    """os.write until all of ``data`` is written (a pipe may take part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


class StderrWriter:
    """Writes lines to ``fd`` from a thread; :meth:`write` never blocks on the reader.

    ``note(n)`` renders the line that reports ``n`` dropped lines, in the
    format of the others; it is called with the lock held, from either thread.
    """

    def __init__(
        self, fd: int, note: Callable[[int], bytes], queue_bytes: int = QUEUE_BYTES
    ) -> None:
        self._fd = fd
        self._note = note
        self._limit = queue_bytes
        self._cond = threading.Condition(threading.Lock())
        # What waits to be written: (lines, 0), or (a note, the count it reports).
        self._queue: list[tuple[bytes, int]] = []
        self._queued = 0  # bytes queued or being written
        self._unreported = 0  # lines dropped since the last note
        # The last write failed (EPIPE): the next note waits for a new line, rather
        # than the thread trying it again and again.
        self._failing = False
        self._waiting = False  # the thread waits for lines
        self._closed = False
        #: Lines dropped since start, for the metric.
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="semantica-stderr", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Queue ``data`` (whole lines, each ending in a newline); drop it if the queue is full.

        Full means the cap is reached by what waits before ``data``, not by ``data``
        itself: a line over the cap is dropped only behind others.
        """
        with self._cond:
            if self._closed:
                return
            if self._queued >= self._limit:
                lines = data.count(b"\n")
                self.dropped += lines
                self._unreported += lines
                return
            if self._unreported:
                # The reader is back: the gap is noted where it was.
                self._add_note()
            self._add(data, 0)
            if self._waiting:
                self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every queued line is written, and the note
        of those dropped; whether they were (not when stderr failed and lost some)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queued or (self._unreported and not self._failing):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not self._unreported

    def close(self) -> None:
        """Stop taking lines; the thread ends once it has written what is queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _add(self, data: bytes, noted: int) -> None:
        self._queue.append((data, noted))
        self._queued += len(data)

    def _add_note(self) -> None:
        self._add(self._note(self._unreported), self._unreported)
        self._unreported = 0

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    if self._closed:
                        return
                    self._waiting = True
                    self._cond.wait()
                    self._waiting = False
                batch, self._queue = self._queue, []
            data = b"".join(part for part, _ in batch)
            written = self._write(data)
            with self._cond:
                self._queued -= len(data)
                self._failing = written < len(data)
                if self._failing:
                    self._count_lost(batch, written)
                elif self._unreported and not self._queued:
                    # Everything queued went out: say what did not, at once (a flush
                    # waits for this line too).
                    self._add_note()
                self._cond.notify_all()  # for flush()

    def _write(self, data: bytes) -> int:
        """Write ``data`` as a blocking write would; how much of it went out."""
        view = memoryview(data)
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, view[written:])
            except BlockingIOError:
                # stderr is non-blocking: wait, in this thread, until it takes more.
                try:
                    select.select((), (self._fd,), ())
                except (OSError, ValueError):  # closed meanwhile, or past select's fd limit
                    return written
            except OSError:
                return written  # stderr closed (EPIPE): what is left is counted as dropped
        return written

    def _count_lost(self, batch: list[tuple[bytes, int]], written: int) -> None:
        """Count what a failed write lost: each line not written whole, and the notes."""
        lost = 0
        start = 0
        for data, noted in batch:
            end = start + len(data)
            if end > written:
                if noted:
                    self._unreported += noted  # counted already: the next note says them
                else:
                    lost += data.count(b"\n", max(written - start, 0))
            start = end
        self.dropped += lost
        self._unreported += lost
