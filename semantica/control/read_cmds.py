"""The work of ``semctl status``, ``list``, ``show``, ``wait``, ``logs``, ``queues`` and
``metrics``, without typer (write_cmds.py: the commands that change jobs and queues).

A person types these often, and each runs as a new process: they must start quickly.
Both ways into them call the functions here, with the same output and exit status: the
typer commands of cli.py, and the fast path (fast_path.py), which parses the common
forms itself and never imports typer.

Contract: each ``run_*`` function checks its input, connects (``where``: the
``--home`` and ``--socket`` given, else the environment's), makes its request, prints
the answer (``--json``: one JSON document; else text for people, every piece of job
data escaped by :mod:`semantica.control.terminal`), and returns the exit status (0,
or 1 when a waited-for job did not end DONE). Library errors (no supervisor, no such
job, a job id below 1) are raised as :class:`~semantica.errors.SemanticaError` for
the caller to report: both callers print the same one line and exit with its code.
Importing this module is cheap: rich is loaded only to draw (render.py), never for ``--json``.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from semantica.control.client import Client
from semantica.control.terminal import error_text, printable, write_output
from semantica.errors import EXIT_JOB_FAILED, BadInput
from semantica.models import TERMINAL_STATES, JobState

#: ``(home, socket)`` as semctl was given them (None: from the environment).
Where = tuple[str | None, str | None]


def print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def fields_of(msg: msgspec.Struct) -> dict[str, Any]:
    """A reply's fields for --json: without the request id (and the tag, which is no field)."""
    return {f: getattr(msg, f) for f in msg.__struct_fields__ if f != "rid"}


def check_ids(*job_ids: int | None) -> None:
    """Job ids start at 1: anything else is bad input, said before connecting."""
    for job_id in job_ids:
        if job_id is not None and job_id < 1:
            raise BadInput(f"job ids are whole numbers from 1 up, got {job_id}")


def run_show(job_id: int, json_out: bool, where: Where) -> int:
    check_ids(job_id)
    with Client(*where) as client:
        job = client.get(job_id)
    if json_out:
        print_json(job)
    else:
        from semantica.control import render

        render.job_details(job)
    return 0


def run_list(
    where: Where,
    *,
    state: str | None,
    queue: str | None,
    type: str | None,
    subject: str | None,
    limit: int,
    json_out: bool,
) -> int:
    with Client(*where) as client:
        jobs = client.list(state=state, queue=queue, type=type, subject=subject, limit=limit)
    if json_out:
        print_json(jobs)  # the array alone, as ever: `total` is not in it
    else:
        from semantica.control import render

        render.job_table(jobs)
        shown = render.shown_of(jobs)
        if shown:
            print(shown)
    return 0


def run_wait(job_ids: list[int], timeout: float | None, json_out: bool, where: Where) -> int:
    """Exit status 0 only if every job ended DONE (1 otherwise, timed out included)."""
    check_ids(*job_ids)
    with Client(*where) as client:
        jobs = client.wait_many(job_ids, timeout=timeout)
    if json_out:
        print_json(jobs)
    else:
        for job in jobs:
            line = f"{job.id} {job.state}"
            if job.error is not None and job.state != JobState.DONE:
                line += f" ({error_text(job)})"
            print(printable(line))
    unfinished = [job for job in jobs if job.state not in TERMINAL_STATES]
    if unfinished and timeout is not None:
        # A timeout is not a failure: say which it was (stdout stays the jobs).
        print(
            f"semctl: timed out after {timeout:g} s; {len(unfinished)} of {len(jobs)} "
            "jobs not finished",
            file=sys.stderr,
        )
    if any(job.state != JobState.DONE for job in jobs):
        return EXIT_JOB_FAILED
    return 0


def run_logs(job_id: int, lines: int | None, json_out: bool, where: Where) -> int:
    check_ids(job_id)
    with Client(*where) as client:
        text = client.logs(job_id, lines)
    if json_out:
        print_json({"id": job_id, "lines": text})
    else:
        write_output(text)  # the job's own output, as it wrote it
    return 0


def run_status(json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        reply = client.status()
    if json_out:
        print_json(
            {
                "version": reply.version,
                "uptime_s": reply.uptime_s,
                "db_bytes": reply.db_bytes,
                "counts": reply.counts,
                "workers": reply.workers,
                "pid": reply.pid,
                "home": reply.home,
                "durability": reply.durability,
                "last_maintenance": reply.last_maintenance,
                "draining": reply.draining,
                "store": reply.store,
                "node": reply.node,
                "nodes": reply.nodes,
                "waiting_on_dependencies": reply.waiting_on_dependencies,
                "schedules": {"total": reply.schedules, "paused": reply.schedules_paused},
            }
        )
    else:
        from semantica.control import render

        render.status(reply)
    return 0


def run_queues(json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        infos = client.queues()
    if json_out:
        print_json(infos)
    else:
        from semantica.control import render

        render.queue_table(infos)
    return 0


def run_metrics(json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        text = client.metrics()
    if not json_out:
        sys.stdout.write(text)
        return 0
    from prometheus_client.parser import text_string_to_metric_families

    print_json(
        {
            family.name: {
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": sample.name, "labels": sample.labels, "value": sample.value}
                    for sample in family.samples
                ],
            }
            for family in text_string_to_metric_families(text)
        }
    )
    return 0
