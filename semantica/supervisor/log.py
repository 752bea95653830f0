"""Structured logs for the supervisor: structlog events to stderr and to ``daemon.log``.

``SEMANTICA_LOG_FORMAT=json`` prints one JSON object a line on stderr (for
journald, ``jq``); ``pretty`` prints aligned, coloured lines for a terminal.
The default is pretty on a terminal and JSON otherwise. ``daemon.log`` in the
state directory always gets JSON lines, and is rotated by size (the current
file and ``daemon.log.1`` .. ``.3``), so the logs survive a service manager
that drops stderr.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

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

    def write_line(self, line: str) -> None:
        try:
            if self._file is None:
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115  # kept open
            if self._file.tell() + len(line) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            self._file.write(line + "\n")
            self._file.flush()
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


class _CopyToFile:
    """A processor that writes each event as a JSON line to a file, then passes it on."""

    def __init__(self, target: RotatingFile) -> None:
        self.target = target

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.target.write_line(json.dumps(event, default=str))
        return event


def configure(log_format: str | None, log_file: Path | None = None) -> None:
    """Set up structlog once for this process (``log_file``: also JSON lines there)."""
    tty = sys.stderr.isatty()
    if log_format is None:
        log_format = "pretty" if tty else "json"
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if log_file is not None:
        processors.append(_CopyToFile(RotatingFile(log_file)))
    structlog.configure(
        processors=[*processors, renderer],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
