"""What workers write to their stdout and stderr, relayed into the supervisor's log.

A worker's standard output and error are one pipe that the supervisor reads
(:func:`relay`), not the supervisor's own stderr. What a handler prints, what
a command it runs writes to an inherited descriptor, and a worker's own last
words (a traceback as it dies) become ``worker output`` log events, one a
line, with the worker's pid and the job it was running: they go to
``daemon.log``, and to stderr through the supervisor's non-blocking writer.

Why not let workers inherit the supervisor's stderr: when that is a pipe
nobody reads (``semanticad 2>&1 | less``, paused; a stuck ``tee``; journald
pushing back), a worker that prints blocks in ``write``. A plain handler then
hangs in its thread, an ``async`` one stalls the worker's event loop until
its heartbeat runs out. Read by the supervisor, a worker's output never
blocks the worker: it is read as it comes, and what stderr cannot take is
dropped there and counted, as for every log line (``daemon.log`` keeps it).

A line over ``LOG_LINE_MAX`` is cut, with a note, as a job's log line is.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import trio

from semantica.limits import LOG_LINE_MAX, cut

log = structlog.get_logger("semantica.worker_output")

_CHUNK = 65536


async def relay(
    stream: trio.abc.ReceiveStream,
    worker_pid: int,
    running: Callable[[], int | None] = lambda: None,
) -> None:
    """Log each line read from ``stream`` (a worker's stdout and stderr) until EOF.

    ``running`` tells the job a line read now belongs to: the job the worker
    runs, else the one it ran last. The event carries it as ``job_id`` (a line
    written just as one job ends and the next starts may be put under either).

    A line is logged whole once its newline comes (or at EOF), cut to
    ``LOG_LINE_MAX``; a line still growing past the cap is logged at the cap
    and the rest of it dropped, so a worker cannot make the supervisor hold
    an endless line.

    Cancellation: stops at once; a partial line read so far is logged.
    """
    partial = b""
    dropping = False  # the current line went past the cap: skip to its end
    try:
        while chunk := await stream.receive_some(_CHUNK):
            *lines, rest = chunk.split(b"\n")
            for line in lines:
                if not dropping:
                    _line(partial + line, worker_pid, running())
                partial, dropping = b"", False
            if dropping:
                continue
            partial += rest
            if len(partial) > LOG_LINE_MAX:
                _line(partial, worker_pid, running())
                partial, dropping = b"", True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        if partial:
            _line(partial, worker_pid, running())


def _line(raw: bytes, worker_pid: int, job_id: int | None) -> None:
    text = raw.decode("utf-8", "backslashreplace").rstrip("\r")
    line = cut(text, LOG_LINE_MAX, "worker output line", whole=False)
    if job_id is None:
        log.info("worker output", worker_pid=worker_pid, line=line)
    else:
        log.info("worker output", worker_pid=worker_pid, job_id=job_id, line=line)
