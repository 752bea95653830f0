"""How the web view shows values: the filters every template uses.

Everything from a job goes through :func:`text` or :func:`log_line` before a template
prints it (and the templates autoescape what they print): a control character is
shown as a visible escape (``\\x1b``), exactly as ``semctl`` shows it in a terminal,
and a log line's ANSI colour and cursor sequences are dropped, so nothing a job
writes can style the page, move text about or hide other text.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from semantica.control.terminal import error_text, printable
from semantica.control.top import WAITING_WORDS
from semantica.models import Job

# CSI sequences (colours, cursor moves), OSC sequences (titles, hyperlinks) ended by
# BEL or ST, and the other two-character escapes.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
)


def text(value: object) -> str:
    """Any value as one safe line of text ("-" for None)."""
    if value is None:
        return "-"
    return printable(value if isinstance(value, str) else str(value))


def log_line(line: str) -> str:
    """A line of a job's output without its terminal escapes (tabs kept as tabs)."""
    return printable(_ANSI.sub("", line).replace("\t", "    "))


def as_json(value: Any) -> str:
    """A payload or result, as indented JSON text: its lines kept (JSON has no raw newline
    inside a string, so each is a line break of the layout), anything else inert."""
    formatted = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    return "\n".join(printable(line) for line in formatted.split("\n"))


def when(value: datetime | None) -> str:
    """A time in this machine's zone, to the second, with the zone's name."""
    if value is None:
        return "-"
    local = value.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago: "4 s ago", "3 min ago", "2 h ago", "5 d ago"; in the future: "in 3 min"."""
    if value is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    future = seconds < 0
    spoken = duration(abs(seconds), whole=True)
    return f"in {spoken}" if future else f"{spoken} ago"


def duration(seconds: float | None, whole: bool = False) -> str:
    """A duration for people: "850 ms", "12.3 s", "4 min 5 s", "2 h 10 min", "3 d 4 h"."""
    if seconds is None:
        return "-"
    if seconds < 1 and not whole:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if whole else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs and not whole else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def size(n: int | None) -> str:
    """Bytes for people: "512 B", "3.4 MB"."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover  # (the loop returns at GB)


def number(n: int | float | None) -> str:
    return "-" if n is None else f"{n:,}"


def waiting_text(job: Job) -> str:
    """Why a job waits, in the words ``semctl top`` uses ("paused queue", "jobs 4, 5 +1")."""
    words = WAITING_WORDS.get(job.waiting_for, job.waiting_for or "")
    if job.waiting_for == "dependency" and job.waiting_on:
        ids = job.waiting_on
        words = ("jobs " if len(ids) > 1 else "job ") + ", ".join(map(str, ids[:3]))
        words += f" +{len(ids) - 3}" if len(ids) > 3 else ""
    return words


FILTERS = {
    "text": text,
    "log_line": log_line,
    "as_json": as_json,
    "when": when,
    "iso": iso,
    "ago": ago,
    "duration": duration,
    "size": size,
    "number": number,
    # A job's error on one line, labelled if it is an earlier attempt's (as semctl list).
    "error_text": error_text,
    # Why a queued job waits, in words (the jobs table, the dashboard).
    "waiting": waiting_text,
}
