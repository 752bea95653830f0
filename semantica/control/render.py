"""How ``semctl`` draws jobs and status for people. Never used for ``--json``.

Each view is described as blocks (plain.py), which are drawn directly when simple and
by rich otherwise. Every piece of job data is escaped by
:func:`~semantica.control.terminal.printable` (:func:`span`), and is never markup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec

from semantica.config import POSTGRES_SCHEMES
from semantica.control.plain import Block, Line, Span, Table, show
from semantica.control.terminal import STATE_STYLE, error_label, error_text, printable
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


def span(text: str | None, style: str = "", *, default: str = "-") -> Span:
    """``text`` escaped (``default`` when None), in ``style``: job data as a view shows it."""
    return (default if text is None else printable(text), style)


def state_span(state: str) -> Span:
    """A job state in its colour."""
    return span(state, STATE_STYLE.get(state, ""))


def _json(value: object) -> Line:
    return [span(msgspec.json.encode(value).decode())]


def job_details(job: Job) -> None:
    show(job_details_blocks(job))


def job_details_blocks(job: Job) -> list[Block]:
    rows: list[list[Line]] = []

    def add(label: str, *value: Span) -> None:
        rows.append([[(label, "")], list(value)])

    add("job", (f"{job.id}  ", ""), span(job.type), ("  ", ""), state_span(job.state))
    add("queue", span(job.queue), (f"   priority {job.priority}", ""))
    if job.subject is not None:
        add("subject", span(job.subject), (f"   generation {job.generation}", ""))
    add("attempts", (f"{job.attempts} of {job.max_attempts}", ""))
    add("created", (_when(job.created_at), ""))
    if job.state == JobState.QUEUED:
        add("waiting for", span(waiting(job)))
    if job.superseded_by is not None:
        add("superseded by", (f"job {job.superseded_by}", ""))
    if job.dependencies:
        add("after", (_dependencies(job), ""))
    if job.dependents:
        more = job.dependents_count - len(job.dependents)
        dependents = ", ".join(map(str, job.dependents))
        add("dependents", (dependents + (f" and {more:,} more" if more > 0 else ""), ""))
    if job.schedule is not None:
        add("from", ("schedule ", ""), span(job.schedule), (_slot(job), ""))
    conditions = [
        c for c, on in (("charging", job.require_charging), ("idle CPU", job.require_idle)) if on
    ]
    if conditions:
        add("requires", (", ".join(conditions), ""))
    add("started", (_when(job.started_at), ""))
    if job.finished_at is not None:
        took = _took(job)  # (none for a job that never ran: superseded, cancelled queued)
        add("finished", (_when(job.finished_at) + (f"   took {took}" if took else ""), ""))
    if job.worker_pid is not None:
        add("worker", (str(job.worker_pid), ""))
    if job.progress is not None and job.state == JobState.RUNNING:
        note = [("  ", ""), span(job.progress_message)] if job.progress_message else []
        add("progress", (f"{job.progress:.0%}", ""), *note)
    if job.error is not None:
        error = [span(job.error.kind, "red"), (": ", ""), span(job.error.message)]
        add(error_label(job), *error)
    if job.result is not None:
        add("result", *_json(job.result))
    payload = payload_for_screen(job.type, job.payload, f"semctl show {job.id} --json")
    add("payload", *_json(payload))
    return [Table([("", False), ("", False)], rows, grid=True)]


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
    show(queue_table_blocks(queues))


def queue_table_blocks(queues: list[QueueInfo]) -> list[Block]:
    if not queues:
        return [[("no queues", "")]]
    columns = ("QUEUE", "PAUSED", "LIMIT", *(state.value for state in JobState))
    rows = [
        [
            [span(queue.name)],
            [("yes" if queue.paused else "no", "")],
            [(str(queue.limit) if queue.limit else "-", "")],
            *([(str(queue.counts.get(state.value, 0)), "")] for state in JobState),
        ]
        for queue in queues
    ]
    return [Table([(column, True) for column in columns], rows)]


def job_table(jobs: list[Job]) -> None:
    show(job_table_blocks(jobs))


def job_table_blocks(jobs: list[Job]) -> list[Block]:
    if not jobs:
        return [[("no jobs", "")]]
    columns = ("ID", "TYPE", "QUEUE", "STATE", "TRIES", "CREATED", "TOOK", "ERROR")
    rows = [
        [
            [(str(job.id), "")],
            [span(job.type)],
            [span(job.queue)],
            [state_span(job.state)],
            [(f"{job.attempts}/{job.max_attempts}", "")],
            [(_when(job.created_at), "")],
            [(_took(job), "")],
            [span(error_text(job))],  # a long error keeps to its row
        ]
        for job in jobs
    ]
    return [Table([(c, c != "ERROR") for c in columns], rows, last_one_line=True)]


def status(reply: StatusReply) -> None:
    show(status_blocks(reply))


def status_blocks(reply: StatusReply) -> list[Block]:
    header = span(
        f"semanticad {reply.version}  pid {reply.pid}  up {reply.uptime_s:.0f} s  "
        f"db {reply.db_bytes / 1e6:.1f} MB  home {reply.home}"
    )
    counts: Line = [("jobs: ", "")]
    for i, state in enumerate(JobState):
        counts += [
            ("  " if i else "", ""),
            state_span(state),
            (f" {reply.counts.get(state, 0)}", ""),
        ]
    if reply.waiting_on_dependencies:
        counts.append((f"  ({reply.waiting_on_dependencies} queued wait for other jobs)", ""))
    blocks: list[Block] = [[header]]
    if reply.draining:
        blocks.append([(DRAINING, "bold yellow")])
    blocks.append(counts)
    if reply.schedules:
        paused = f" ({reply.schedules_paused} paused)" if reply.schedules_paused else ""
        blocks.append([(f"schedules: {reply.schedules}{paused}", "")])
    # Nodes only where there are others to tell apart: a shared (PostgreSQL) store.
    shared = len(reply.nodes) > 1 or reply.store.startswith(POSTGRES_SCHEMES)
    if shared:
        node_columns = ("NODE", "HOST", "PID", "STATE", "WORKERS", "HEARTBEAT", "VERSION")
        nodes = [
            [
                [span(node.name + (" (this one)" if node.this else ""))],
                [span(node.host)],
                [(str(node.pid), "")],
                [span(node.state)],
                [(str(node.workers), "")],
                [(f"{node.heartbeat_age_s:.1f} s ago", "")],
                [span(node.version)],
            ]
            for node in reply.nodes
        ]
        blocks.append(Table([(column, False) for column in node_columns], nodes))
    columns = ("NODE", "WORKER PID", "STATE", "JOB") if shared else ("WORKER PID", "STATE", "JOB")
    workers = [
        [
            *([[span(worker.node or "-")]] if shared else []),
            [(str(worker.pid), "")],
            [span(worker.state)],
            [("-" if worker.job is None else str(worker.job), "")],
        ]
        for worker in reply.workers
    ]
    blocks.append(Table([(column, False) for column in columns], workers))
    return blocks
