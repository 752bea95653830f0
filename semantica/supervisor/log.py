"""Structured logs for the supervisor: structlog events to stderr and to ``daemon.log``.

``SEMANTICA_LOG_FORMAT=json`` prints one JSON object a line on stderr (for
journald, ``jq``); ``pretty`` prints aligned, coloured lines for a terminal.
The default is pretty on a terminal and JSON otherwise. ``daemon.log`` in the
state directory always gets JSON lines, and is rotated by size (the current
file and ``daemon.log.1`` .. ``.3``), so the logs survive a service manager
that drops stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import msgspec
import structlog

#: daemon.log is rotated when it passes this size; three old files are kept.
LOG_FILE_MAX_BYTES = 10 << 20
LOG_FILE_KEEP = 3


class RotatingFile:
    """Appends lines to a file, rotating it by size. Errors (disk full) drop lines."""

    def __init__(self, path: Path, max_bytes: int = LOG_FILE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._file: TextIO | None = None
        self._size = 0  # characters written to the current file (bytes, near enough)

    def write_line(self, line: str) -> None:
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  # kept open
                self._size = self._file.tell()
            if self._size + len(line) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(line + "\n")
            self._file.flush()
            self._size += len(line) + 1
        except OSError:
            self._file = None  # try again on the next line

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        for n in range(LOG_FILE_KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = 0


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

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        line = _encoder.encode(event).decode()
        if self.target is not None:
            self.target.write_line(line)
        return line


class _CopyToFile:
    """In pretty mode: write each event as a JSON line to the file, then pass it on."""

    def __init__(self, target: RotatingFile) -> None:
        self.target = target

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.target.write_line(_encoder.encode(event).decode())
        return event


def configure(log_format: str | None, log_file: Path | None = None) -> None:
    """Set up structlog once for this process (``log_file``: also JSON lines there)."""
    tty = sys.stderr.isatty()
    if log_format is None:
        log_format = "pretty" if tty else "json"
    target = None if log_file is None else RotatingFile(log_file)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if log_format == "json":
        processors.append(_JsonLines(target))
    else:
        if target is not None:
            processors.append(_CopyToFile(target))
        processors.append(structlog.dev.ConsoleRenderer(colors=tty))
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
