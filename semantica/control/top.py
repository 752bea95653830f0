"""``semctl top``: a live dashboard of the engine, redrawn about once a second.

Each frame comes from one ``GetTop`` request. ``q`` (on a terminal) or Ctrl-C
quits; ``--once`` prints a single frame, for scripts and tests.

A frame fits the screen, 80x24 included: a header of two lines (three while
draining), then workers, queues, the jobs next in line (those that start next,
in that order, then the blocked ones with their reason), the schedules due
next (with how their last run went) and the latest failures, each under its
column header. Rows are shared out so that every section shows some; a section
cut short ends in "... N more". Long names and errors end in an ellipsis rather
than wrap. Job text is escaped and never read
as markup (:mod:`semantica.control.terminal`).
"""

from __future__ import annotations

import contextlib
import select
import sys
import time
from collections.abc import Iterator, Sequence

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from semantica.control import render, terminal
from semantica.control.client import Client
from semantica.control.terminal import STATE_STYLE, cell
from semantica.models import Job, JobState
from semantica.protocol import TopReply

REFRESH_S = 1.0

#: Why a job waits, in a few words (``semctl show`` says more).
WAITING_WORDS = {
    None: "next: a free worker",
    "run_after": "its start time",
    "retry_backoff": "its retry time",
    "queue_paused": "paused queue",
    "queue_limit": "queue at its limit",
    "subject_busy": "its subject's running job",
    "charging": "AC power",
    "idle": "an idle CPU",
}
WORKER_STYLE = {
    "busy": STATE_STYLE["RUNNING"],
    "idle": "green",
    "starting": "dim",
    "stopping": "dim",
}
#: The job states a queue row counts.
QUEUE_STATES = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.DONE,
    JobState.FAILED,
    JobState.CANCELLED,
)


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


def _flexible(text: str | None, style: str = "") -> Text:
    """A cell that is cut with an ellipsis, never wrapped, when its column is narrowed."""
    return cell(text, style, one_line=True)


def _table(
    *columns: str, flexible: Sequence[str] = (), styles: dict[str, str] | None = None
) -> Table:
    """A borderless table; ``flexible`` columns give up width first (their cells end in
    an ellipsis), the others keep theirs."""
    table = Table(box=None, pad_edge=False, collapse_padding=True)
    for column in columns:
        table.add_column(
            column,
            no_wrap=column not in flexible,
            header_style=f"bold {(styles or {}).get(column, '')}".strip(),
            min_width=min(len(column), 8) if column in flexible else None,
        )
    return table


def _rows(room: int, wants: list[int]) -> list[int]:
    """Share ``room`` rows among sections wanting ``wants`` rows: a row to each in turn
    while rows remain, so that every section shows something before any shows all."""
    got = [0] * len(wants)
    while room > 0 and any(g < w for g, w in zip(got, wants, strict=True)):
        for i, want in enumerate(wants):
            if room > 0 and got[i] < want:
                got[i] += 1
                room -= 1
    return got


def _rate(count: int, seconds: int) -> str:
    return f"{count / seconds:.1f}"


def _header(top: TopReply) -> list[Text]:
    lines = [
        Text.assemble(
            cell(f"semanticad {top.version}", "bold"),
            f"  up {_duration(top.uptime_s)}  "
            f"CPU {top.supervisor_cpu_percent:.1f}%  RSS {_mb(top.supervisor_rss_bytes)}",
        ),
        Text.assemble(
            "jobs/s, 10 s | 1 min:  enqueued ",
            f"{_rate(top.enqueued_10s, 10)} | {_rate(top.enqueued_60s, 60)}",
            "  finished ",
            (f"{_rate(top.finished_10s, 10)} | {_rate(top.finished_60s, 60)}", "green"),
            "  failed ",
            (
                f"{_rate(top.failed_10s, 10)} | {_rate(top.failed_60s, 60)}",
                "bold red" if top.failed_60s else "",
            ),
        ),
    ]
    if len(top.nodes) > 1:
        # Rates are counted by the node that answered; workers come from every node.
        lines[1] = Text.assemble(f"{top.node}: ", lines[1])
        nodes = Text("nodes: ")
        for i, node in enumerate(top.nodes):
            style = "" if node.state == "alive" else "dim" if node.state == "gone" else "bold red"
            nodes.append_text(
                Text.assemble(", " if i else "", cell(node.name, "bold" if node.this else ""), " ")
            )
            nodes.append(node.state, style=style)
        lines.append(nodes)
    if top.draining:
        lines.append(Text(render.DRAINING, style="bold yellow"))
    return lines


def _more(table: Table, shown: int, total: int) -> None:
    """A line under the table (not a row: it must not widen a column) for rows left out."""
    if total > shown:
        table.caption = Text(f"... {total - shown} more", style="dim")
        table.caption_justify = "left"


def frame(top: TopReply, height: int = 50) -> Group:
    """One screen of at most ``height`` lines: header, workers, queues, next in line,
    the schedules due next, the latest failures."""
    header = _header(top)
    sections = [top.workers, top.queues, top.waiting, top.failures, top.schedules]
    totals = [len(top.workers), max(top.queues_total, len(top.queues)), len(top.waiting)]
    totals += [len(top.failures), len(top.schedules)]
    shown = [i for i, rows in enumerate(sections) if rows or i == 0]
    room = height - len(header) - 2 * len(shown)  # each section: a blank line, a header
    wants = [totals[i] for i in shown]
    allowed = dict(zip(shown, _rows(max(room, 0), wants), strict=True))

    def fits(i: int) -> int:
        """How many rows of section i to draw: one less than allowed if a "more" row is due."""
        rows = allowed.get(i, 0)
        return rows if rows >= totals[i] else max(rows - 1, 0)

    parts: list[Table | Text] = list(header)
    several = len(top.nodes) > 1
    workers = _table(
        *(["NODE"] if several else []),
        "WORKER",
        "STATE",
        "JOB",
        "TYPE",
        "RUNNING",
        "PROGRESS",
        "CPU %",
        "RSS",
        flexible=["TYPE"],
    )
    for w in top.workers[: fits(0)]:
        workers.add_row(
            *([cell(w.node or "-")] if several else []),
            str(w.pid),
            Text(w.state, style=WORKER_STYLE.get(w.state, "")),
            "-" if w.job is None else str(w.job),
            _flexible(w.job_type),
            _duration(w.running_s),
            "-" if w.progress is None else f"{w.progress:.0%}",
            f"{w.cpu_percent:.1f}",
            _mb(w.rss_bytes),
        )
    _more(workers, fits(0), totals[0])
    parts += [Text(), workers]
    if 1 in allowed:
        queues = _table(
            "QUEUE",
            "PAUSED",
            "LIMIT",
            *QUEUE_STATES,
            flexible=["QUEUE"],
            styles={state.value: STATE_STYLE[state] for state in QUEUE_STATES},
        )
        for q in top.queues[: fits(1)]:
            counts = (q.counts.get(state.value, 0) for state in QUEUE_STATES)
            queues.add_row(
                _flexible(q.name),
                Text("yes", style="bold yellow") if q.paused else Text("no"),
                str(q.limit) if q.limit else "-",
                *(
                    Text(str(n), style=STATE_STYLE[state] if n else "dim")
                    for state, n in zip(QUEUE_STATES, counts, strict=True)
                ),
            )
        _more(queues, fits(1), totals[1])
        parts += [Text(), queues]
    if 2 in allowed:
        waiting = _table(
            "NEXT JOB", "TYPE", "QUEUE", "PRIORITY", "WAITING FOR", flexible=["TYPE", "QUEUE"]
        )
        for job in top.waiting[: fits(2)]:
            waiting.add_row(
                str(job.id),
                _flexible(job.type),
                _flexible(job.queue),
                str(job.priority),
                _waiting(job),
            )
        _more(waiting, fits(2), totals[2])
        parts += [Text(), waiting]
    if 4 in allowed:
        parts += [Text(), _schedules(top, fits(4), totals[4])]
    if 3 in allowed:
        failures = _table(
            "FAILED JOB", "TYPE", "ERROR", flexible=["TYPE", "ERROR"], styles={"FAILED JOB": "red"}
        )
        for job in top.failures[: fits(3)]:
            error = f"{job.error.kind}: {job.error.message}" if job.error else ""
            failures.add_row(str(job.id), _flexible(job.type), _flexible(error, "red"))
        _more(failures, fits(3), totals[3])
        parts += [Text(), failures]
    return Group(*parts)


def _schedules(top: TopReply, rows: int, total: int) -> Table:
    """The schedules due next: when, and how the last run went."""
    from semantica.control.schedule_render import last_text, next_text

    table = _table("SCHEDULE", "NEXT", "LAST RUN", flexible=["SCHEDULE", "LAST RUN"])
    for schedule in top.schedules[:rows]:
        table.add_row(_flexible(schedule.name), next_text(schedule), _flexible(last_text(schedule)))
    _more(table, rows, total)
    return table


def _waiting(job: Job) -> Text:
    words = WAITING_WORDS.get(job.waiting_for, job.waiting_for or "")
    if job.waiting_for == "dependency" and job.waiting_on:
        # Which jobs, as ``show`` says; the first two and a count keep the column narrow.
        ids = job.waiting_on
        words = ("jobs " if len(ids) > 1 else "job ") + ", ".join(map(str, ids[:2]))
        if len(ids) > 2:
            words += f" +{len(ids) - 2}"
    return Text(words, style="green" if job.waiting_for is None else "yellow")


def print_once(client: Client) -> None:
    """One frame: the screen's size on a terminal; into a pipe or a file, whole."""
    if terminal.is_terminal():
        console = terminal.console()
        console.print(frame(client.top(), console.size.height))
    else:
        terminal.show(frame(client.top(), height=10_000))


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
