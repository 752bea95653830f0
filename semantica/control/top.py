"""``semctl top``: a live dashboard of the engine, redrawn about once a second.

Each frame comes from one ``GetTop`` request. ``q`` (on a terminal) or Ctrl-C
quits; ``--once`` prints a single frame, for scripts and tests.
"""

from __future__ import annotations

import contextlib
import select
import sys
import time
from collections.abc import Iterator

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from semantica.control import render, terminal
from semantica.control.client import Client
from semantica.control.terminal import cell
from semantica.models import JobState
from semantica.protocol import TopReply

REFRESH_S = 1.0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def frame(top: TopReply, height: int = 50, expand: bool = True) -> Group:
    """One screen: header, workers, queues, waiting jobs, recent failures."""
    header = Text.assemble(
        cell(f"semanticad {top.version}", "bold"),
        f"  up {_duration(top.uptime_s)}  "
        f"supervisor CPU {top.supervisor_cpu_percent:.1f}% RSS {_mb(top.supervisor_rss_bytes)}  "
        f"finished: {top.finished_10s} in 10 s ({top.finished_10s / 10:.1f}/s), "
        f"{top.finished_60s} in 1 min ({top.finished_60s / 60:.1f}/s)",
    )
    if top.draining:
        header.append(f"\n{render.DRAINING}", style="bold yellow")
    workers = Table(title="workers", title_justify="left", box=None, pad_edge=False, expand=expand)
    for column in ("PID", "STATE", "JOB", "TYPE", "RUNNING", "DONE", "CPU %", "RSS"):
        workers.add_column(column, no_wrap=True)
    for w in top.workers:
        workers.add_row(
            str(w.pid),
            w.state,
            "-" if w.job is None else str(w.job),
            cell(w.job_type),
            _duration(w.running_s),
            "-" if w.progress is None else f"{w.progress:.0%}",
            f"{w.cpu_percent:.1f}",
            _mb(w.rss_bytes),
        )
    queues = Table(title="queues", title_justify="left", box=None, pad_edge=False, expand=expand)
    for column in ("QUEUE", "PAUSED", "LIMIT", "QUEUED", "RUNNING", "DONE", "FAILED"):
        queues.add_column(column, no_wrap=True)
    for q in top.queues:
        queues.add_row(
            cell(q.name),
            "yes" if q.paused else "no",
            str(q.limit) if q.limit else "-",
            *(
                str(q.counts.get(s.value, 0))
                for s in (JobState.QUEUED, JobState.RUNNING, JobState.DONE, JobState.FAILED)
            ),
        )
    parts: list[Table | Text] = [header, Text(), workers, Text(), queues]
    used = 4 + len(top.workers) + len(top.queues) + 4
    room = max(height - used - 6, 2)
    if top.waiting:
        waiting = Table(
            title="next in line", title_justify="left", box=None, pad_edge=False, expand=expand
        )
        for column in ("JOB", "TYPE", "QUEUE", "WAITING FOR"):
            waiting.add_column(column, no_wrap=True)
        for job in top.waiting[: max(room // 2, 1)]:
            waiting.add_row(
                str(job.id), cell(job.type), cell(job.queue), job.waiting_for or "a free worker"
            )
        parts += [Text(), waiting]
    if top.failures:
        failures = Table(
            title="last failures", title_justify="left", box=None, pad_edge=False, expand=expand
        )
        for column in ("JOB", "TYPE", "ERROR"):
            failures.add_column(column, no_wrap=column != "ERROR")
        for job in top.failures[: max(room // 2, 1)]:
            error = f"{job.error.kind}: {job.error.message}" if job.error else ""
            failures.add_row(str(job.id), cell(job.type), cell(error))
        parts += [Text(), failures]
    return Group(*parts)


def print_once(client: Client) -> None:
    """One frame. Into a pipe or a file: as tall and as wide as it needs, unpadded."""
    if terminal.is_terminal():
        console = terminal.console()
        console.print(frame(client.top(), console.size.height))
    else:
        terminal.show(frame(client.top(), height=1_000, expand=False))


@contextlib.contextmanager
def _keys() -> Iterator[bool]:
    """Put a terminal in cbreak mode so single keys can be read; yields whether it could."""
    if not sys.stdin.isatty():
        yield False
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(keys: bool, timeout: float) -> bool:
    """Wait up to ``timeout`` for a key; True if it was q."""
    if not keys:
        time.sleep(timeout)  # the refresh interval; Ctrl-C still works
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and sys.stdin.read(1).lower() == "q"


def run(client: Client) -> None:
    """Redraw until q or Ctrl-C."""
    console = terminal.console()
    with (
        _keys() as keys,
        Live(console=console, screen=True, auto_refresh=False, vertical_overflow="crop") as live,
    ):
        while True:
            live.update(frame(client.top(), console.size.height), refresh=True)
            if _quit_pressed(keys, REFRESH_S):
                return
