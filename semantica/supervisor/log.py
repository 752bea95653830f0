"""Structured logs for the supervisor: structlog events to stderr.

``SEMANTICA_LOG_FORMAT=json`` prints one JSON object a line (for journald,
``jq``); ``pretty`` prints aligned, coloured lines for a terminal. The default
is pretty on a terminal and JSON otherwise.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str | None) -> None:
    """Set up structlog once for this process."""
    tty = sys.stderr.isatty()
    if log_format is None:
        log_format = "pretty" if tty else "json"
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=tty)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
