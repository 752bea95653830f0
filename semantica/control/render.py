"""How ``semctl`` draws jobs and status for people (rich). Never used for ``--json``.

Every piece of job data goes through :mod:`semantica.control.terminal`: escaped by
``printable`` and handed to rich as ``Text``, never as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from semantica.config import POSTGRES_SCHEMES
from semantica.control.terminal import cell, error_label, error_text, show, state_cell
from semantica.models import EXEC_TYPE, Job, JobState, QueueInfo
from semantica.protocol import StatusReply

#: What a queued job waits for, in words (`semctl show`, and the web view's job page).
WAITING_WORDS = {
    "dependency": "dependency",
    "run_after": "its start time (--delay / --at)",
    "retry_backoff": "its retry time (backoff after a failed attempt)",
    "queue_paused": "its queue to be resumed (semctl resume)",
    "queue_limit": "a free place in its queue (semctl limit)",
    "subject_busy": "the running job of the same subject to end",
    "charging": "AC power (--require-charging)",
    "idle": "an idle CPU (--require-idle)",
}


DRAINING = "draining: shutting down, no new job starts; running jobs get the drain timeout"


def shown_of(jobs: list[Job]) -> str | None:
    """The line under a list that stopped at its limit: "50 of 1,234 shown" (with "+"
    when the supervisor stopped counting); None when the list holds every match."""
    total: int = getattr(jobs, "total", len(jobs))
    capped: bool = getattr(jobs, "total_capped", False)
    if total <= len(jobs) and not capped:
        return None
    return f"{len(jobs):,} of {total:,}{'+' if capped else ''} shown"


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(job: Job) -> str:
    if job.started_at is None or job.finished_at is None:
        return ""
    return f"{(job.finished_at - job.started_at).total_seconds():.3f} s"


def _json(value: object) -> Text:
    return cell(msgspec.json.encode(value).decode())


def job_details(job: Job) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("job", Text.assemble(f"{job.id}  ", cell(job.type), "  ", state_cell(job.state)))
    grid.add_row("queue", Text.assemble(cell(job.queue), f"   priority {job.priority}"))
    if job.subject is not None:
        grid.add_row("subject", Text.assemble(cell(job.subject), f"   generation {job.generation}"))
    grid.add_row("attempts", f"{job.attempts} of {job.max_attempts}")
    grid.add_row("created", _when(job.created_at))
    if job.state == JobState.QUEUED:
        grid.add_row("waiting for", waiting(job))
    if job.superseded_by is not None:
        grid.add_row("superseded by", f"job {job.superseded_by}")
    if job.dependencies:
        grid.add_row("after", _dependencies(job))
    if job.dependents:
        more = job.dependents_count - len(job.dependents)
        grid.add_row(
            "dependents",
            ", ".join(map(str, job.dependents)) + (f" and {more:,} more" if more > 0 else ""),
        )
    if job.schedule is not None:
        grid.add_row("from", Text.assemble("schedule ", cell(job.schedule), _slot(job)))
    conditions = [
        c for c, on in (("charging", job.require_charging), ("idle CPU", job.require_idle)) if on
    ]
    if conditions:
        grid.add_row("requires", ", ".join(conditions))
    grid.add_row("started", _when(job.started_at))
    if job.finished_at is not None:
        took = _took(job)  # (none for a job that never ran: superseded, cancelled queued)
        grid.add_row("finished", _when(job.finished_at) + (f"   took {took}" if took else ""))
    if job.worker_pid is not None:
        grid.add_row("worker", str(job.worker_pid))
    if job.progress is not None and job.state == JobState.RUNNING:
        note = Text.assemble("  ", cell(job.progress_message)) if job.progress_message else ""
        grid.add_row("progress", Text.assemble(f"{job.progress:.0%}", note))
    if job.error is not None:
        grid.add_row(
            error_label(job),
            Text.assemble(cell(job.error.kind, "red"), ": ", cell(job.error.message)),
        )
    if job.result is not None:
        grid.add_row("result", _json(job.result))
    grid.add_row(
        "payload", _json(payload_for_screen(job.type, job.payload, f"semctl show {job.id} --json"))
    )
    show(grid)


def payload_for_screen(type: str, payload: object, full: str = "semctl show --json") -> object:
    """The payload, but an exec job's environment (often a whole shell's, and its secrets)
    as a count: ``full`` (the command that prints it all) says where to see it."""
    if type == EXEC_TYPE and isinstance(payload, dict) and isinstance(payload.get("env"), dict):
        count = len(payload["env"])
        noun = "variable" if count == 1 else "variables"
        return payload | {"env": f"<{count} {noun}: {full} prints them>"}
    return payload


def _slot(job: Job) -> str:
    """``, slot 2026-12-07 03:00 CET`` (in this machine's zone), or that it was run by hand."""
    if job.slot is None:
        return " (run by hand)"
    slot = job.slot.astimezone()
    layout = "%Y-%m-%d %H:%M" if slot.second == 0 else "%Y-%m-%d %H:%M:%S"
    return f", slot {slot.strftime(layout + ' %Z').rstrip()}"


def waiting(job: Job, when: Callable[[datetime | None], str] | None = None) -> str:
    """What a queued job waits for, in words (``semctl show``'s and the web view's job
    page's), its times written by ``when`` (this module's, to the second, by default)."""
    if job.waiting_for is None:
        return "a free worker (next in line)"
    words = WAITING_WORDS.get(job.waiting_for, job.waiting_for)
    if job.waiting_for in ("run_after", "retry_backoff"):
        words += f", at {(when or _when)(job.run_after)}"
    if job.waiting_for == "dependency" and job.waiting_on:
        noun = "job" if len(job.waiting_on) == 1 else "jobs"
        words += f" ({noun} {', '.join(map(str, job.waiting_on))})"
    return words


def _dependencies(job: Job) -> str:
    """``3 (DONE), 4 (QUEUED, any end)``: the jobs it waits for and how they stand."""
    parts = []
    for dep in job.dependencies or ():
        state = "deleted" if dep.state is None else dep.state.value
        parts.append(f"{dep.id} ({state}{', any end' if dep.mode == 'end' else ''})")
    return ", ".join(parts)


def queue_table(queues: list[QueueInfo]) -> None:
    if not queues:
        show(Text("no queues"))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("QUEUE", "PAUSED", "LIMIT", *(state.value for state in JobState)):
        table.add_column(column, no_wrap=True)
    for queue in queues:
        table.add_row(
            cell(queue.name),
            "yes" if queue.paused else "no",
            str(queue.limit) if queue.limit else "-",
            *(str(queue.counts.get(state.value, 0)) for state in JobState),
        )
    show(table)


def job_table(jobs: list[Job]) -> None:
    if not jobs:
        show(Text("no jobs"))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "TYPE", "QUEUE", "STATE", "TRIES", "CREATED", "TOOK", "ERROR"):
        table.add_column(column, no_wrap=column != "ERROR")
    for job in jobs:
        table.add_row(
            str(job.id),
            cell(job.type),
            cell(job.queue),
            state_cell(job.state),
            f"{job.attempts}/{job.max_attempts}",
            _when(job.created_at),
            _took(job),
            cell(error_text(job), one_line=True),  # a long error keeps to its row
        )
    show(table)


def status(reply: StatusReply) -> None:
    header = cell(
        f"semanticad {reply.version}  pid {reply.pid}  up {reply.uptime_s:.0f} s  "
        f"db {reply.db_bytes / 1e6:.1f} MB  home {reply.home}"
    )
    counts = Text("jobs: ")
    for i, state in enumerate(JobState):
        counts.append_text(
            Text.assemble("  " if i else "", state_cell(state), f" {reply.counts.get(state, 0)}")
        )
    if reply.waiting_on_dependencies:
        counts.append(f"  ({reply.waiting_on_dependencies} queued wait for other jobs)")
    parts: list[RenderableType] = [header]
    if reply.draining:
        parts.append(Text(DRAINING, style="bold yellow"))
    parts.append(counts)
    if reply.schedules:
        paused = f" ({reply.schedules_paused} paused)" if reply.schedules_paused else ""
        parts.append(Text(f"schedules: {reply.schedules}{paused}"))
    # Nodes only where there are others to tell apart: a shared (PostgreSQL) store.
    shared = len(reply.nodes) > 1 or reply.store.startswith(POSTGRES_SCHEMES)
    if shared:
        nodes = Table(box=None, pad_edge=False)
        for column in ("NODE", "HOST", "PID", "STATE", "WORKERS", "HEARTBEAT", "VERSION"):
            nodes.add_column(column)
        for node in reply.nodes:
            name = cell(node.name + (" (this one)" if node.this else ""))
            nodes.add_row(
                name,
                cell(node.host),
                str(node.pid),
                cell(node.state),
                str(node.workers),
                f"{node.heartbeat_age_s:.1f} s ago",
                cell(node.version),
            )
        parts.append(nodes)
    table = Table(box=None, pad_edge=False)
    for column in (
        ("NODE", "WORKER PID", "STATE", "JOB") if shared else ("WORKER PID", "STATE", "JOB")
    ):
        table.add_column(column)
    for worker in reply.workers:
        row: list[RenderableType] = [
            str(worker.pid),
            cell(worker.state),
            "-" if worker.job is None else str(worker.job),
        ]
        table.add_row(*([cell(worker.node or "-")] if shared else []), *row)
    parts.append(table)
    show(*parts)
