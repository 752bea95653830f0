"""Structured logs for the supervisor: structlog events to stderr and to ``daemon.log``.

``SEMANTICA_LOG_FORMAT=json`` prints one JSON object a line on stderr (for
journald, ``jq``); ``pretty`` prints aligned, coloured lines for a terminal.
The default is pretty on a terminal and JSON otherwise. ``daemon.log`` in the
state directory always gets JSON lines, and is rotated by size (the current
file and ``daemon.log.1`` .. ``.3``), so the logs survive a service manager
that drops stderr.

stderr is written by a thread of its own (``stderr_writer.py``): a reader
that does not keep up (a paused pager, journald pushing back) makes stderr
miss lines, counted and reported, but never holds up the event loop. The
file keeps every line.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import msgspec
import structlog

from semantica.supervisor.stderr_writer import FLUSH_AT_EXIT_S, StderrWriter, write_all

#: daemon.log is rotated when it passes this size; three old files are kept.
LOG_FILE_MAX_BYTES = 10 << 20
LOG_FILE_KEEP = 3


class RotatingFile:
    """Appends lines to a file, rotating it by size. Errors (disk full) drop lines.

    Each line is one ``write`` on an ``O_APPEND`` descriptor: nothing is held
    in a buffer, so a crash loses no line already logged, at the cost of one
    system call (a flushed text file costs two layers more).
    """

    def __init__(self, path: Path, max_bytes: int = LOG_FILE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0  # bytes in the current file

    def write_line(self, line: bytes) -> None:
        """Append ``line`` and a newline."""
        try:
            if self._fd is None:
                self._open()
            if self._size + len(line) >= self.max_bytes:
                self._rotate()
            assert self._fd is not None
            self._size += write_all(self._fd, line + b"\n")
        except OSError:
            self.close()  # try again on the next line

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _rotate(self) -> None:
        self.close()
        for n in range(LOG_FILE_KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size


class _LineSink:
    """The structlog "logger": writes each rendered line to a stream, at once.

    A stream with a descriptor (stderr, in the service) gets one ``write`` per
    line: directly if it is a regular file (a file never waits for a reader),
    otherwise through a :class:`StderrWriter`, so that a reader who does not
    keep up never blocks the event loop. One without a descriptor (a test's
    capture) gets ``write`` and ``flush``.
    """

    def __init__(self, stream: TextIO, note: Callable[[int], bytes]) -> None:
        self._stream = stream
        self.writer: StderrWriter | None = None
        try:
            self._fd: int | None = stream.fileno()
            stream.flush()  # whatever was printed before goes out first
            regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        except (AttributeError, OSError, ValueError):
            self._fd = None
            return
        if not regular:
            self.writer = StderrWriter(self._fd, note)

    def msg(self, message: str | bytes) -> None:
        if self._fd is not None:
            data = message if isinstance(message, bytes) else message.encode()
            if self.writer is not None:
                self.writer.write(data + b"\n")
                return
            with contextlib.suppress(OSError):  # stderr closed or full: the file still has it
                write_all(self._fd, data + b"\n")
            return
        text = message.decode() if isinstance(message, bytes) else message
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    debug = info = warning = warn = error = critical = exception = fatal = failure = msg


#: Set by :func:`configure`: where events go, and the JSON renderer in JSON mode.
_sink: _LineSink | None = None
_json_lines: _JsonLines | None = None


def _sink_factory(*args: Any) -> _LineSink:
    assert _sink is not None  # configure sets it before it installs this factory
    return _sink


class _Stamp:
    """Adds ``timestamp``: ISO 8601 in UTC with microseconds (``...T23:04:40.324940Z``).

    The same text as structlog's ``TimeStamper(fmt="iso", utc=True)``, at a
    quarter of its cost: the date and time are formatted once a second, and
    every job start and end is an event.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["timestamp"] = self.now()
        return event

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"


_stamp = _Stamp()


def _to_json(value: Any) -> str:
    """What msgspec cannot encode itself (an exception, a path) is logged as its str()."""
    return str(value)


_encoder = msgspec.json.Encoder(enc_hook=_to_json)


class _JsonLines:
    """The last processor in JSON mode: encode the event once, copy it to the file, print it.

    One encoding serves both sinks; it costs a fraction of structlog's own JSON
    renderer with ``json.dumps``, and every job's state change is an event.
    """

    def __init__(self, target: RotatingFile | None) -> None:
        self.target = target

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> bytes:
        line = _encoder.encode(event)
        if self.target is not None:
            self.target.write_line(line)
        return line

    def many(self, events: list[tuple[str, dict[str, Any]]]) -> bytes:
        """Several info events as lines, copied to the file in one write; returns them."""
        timestamp = _stamp.now()
        lines = b"\n".join(
            _encoder.encode({**fields, "event": event, "level": "info", "timestamp": timestamp})
            for event, fields in events
        )
        if self.target is not None:
            self.target.write_line(lines)
        return lines


def info_many(logger: Any, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Log ``(event, fields)`` pairs at info level, as ``logger.info`` would, one by one.

    In JSON mode the lot is one write to each sink, stamped with one time: a
    batch of 25 job ends costs two system calls instead of fifty.
    """
    if not events:
        return
    if _json_lines is None or _sink is None:
        for event, fields in events:
            logger.info(event, **fields)
        return
    _sink.msg(_json_lines.many(events))


class _CopyToFile:
    """In pretty mode: write each event as a JSON line to the file, then pass it on."""

    def __init__(self, target: RotatingFile) -> None:
        self.target = target

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.target.write_line(_encoder.encode(event))
        return event


def dropped_lines() -> int:
    """Lines stderr's reader missed since start (``daemon.log`` has them); for the metric."""
    writer = None if _sink is None else _sink.writer
    return 0 if writer is None else writer.dropped


def flush(timeout: float = FLUSH_AT_EXIT_S) -> None:
    """Give the lines queued for stderr up to ``timeout`` seconds to go out (at exit)."""
    writer = None if _sink is None else _sink.writer
    if writer is not None:
        writer.flush(timeout)


def _dropped_note(log_format: str, colors: bool) -> Callable[[int], bytes]:
    """Renders the line that says ``n`` lines were dropped, as the other lines are rendered.

    It runs in the stderr thread too, so it keeps to what is safe there: no
    structlog processor with state (the shared time stamp is not).
    """
    pretty = structlog.dev.ConsoleRenderer(colors=colors)

    def note(n: int) -> bytes:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        event = {
            "event": f"{n} log lines dropped",
            "count": n,
            "reason": "stderr was not read fast enough; daemon.log has them",
            "level": "warning",
            "timestamp": f"{stamp}.{int((now % 1) * 1e6):06d}Z",
        }
        if log_format == "json":
            return _encoder.encode(event) + b"\n"
        return str(pretty(None, "warning", event)).encode() + b"\n"

    return note


@atexit.register
def _flush_at_exit() -> None:
    flush()


def configure(log_format: str | None, log_file: Path | None = None) -> None:
    """Set up structlog once for this process (``log_file``: also JSON lines there)."""
    global _sink, _json_lines
    tty = sys.stderr.isatty()
    if log_format is None:
        log_format = "pretty" if tty else "json"
    target = None if log_file is None else RotatingFile(log_file)
    if _sink is not None:
        _sink.close()
    _sink = _LineSink(sys.stderr, _dropped_note(log_format, tty))
    _json_lines = None
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        _stamp,
        structlog.processors.format_exc_info,
    ]
    if log_format == "json":
        _json_lines = _JsonLines(target)
        processors.append(_json_lines)
    else:
        if target is not None:
            processors.append(_CopyToFile(target))
        processors.append(structlog.dev.ConsoleRenderer(colors=tty))
    structlog.configure(
        processors=processors,
        logger_factory=_sink_factory,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
