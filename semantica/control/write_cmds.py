"""The work of ``semctl cancel``, ``retry``, ``pause``, ``resume``, ``limit``,
``maintenance`` and ``shutdown``, without typer.

Like read_cmds.py (whose contract these functions keep: check the input, connect to
``where``, make the request, print the answer or its ``--json``, return the exit
status, raise library errors for the caller to report), for the commands that change
jobs and queues. Both the typer commands of cli.py and the fast path call them.
"""

from __future__ import annotations

from semantica.control.client import Client
from semantica.control.read_cmds import Where, check_ids, fields_of, print_json
from semantica.control.terminal import printable
from semantica.errors import BadInput
from semantica.models import QueueInfo


def run_cancel(job_ids: list[int], json_out: bool, where: Where) -> int:
    check_ids(*job_ids)
    with Client(*where) as client:
        results = client.cancel(*job_ids)
    if json_out:
        print_json(results)
    else:
        for outcome in results:
            print(printable(f"{outcome.id} {outcome.state} ({outcome.message})"))
    return 0


def run_retry(job_id: int, dependents: bool, json_out: bool, where: Where) -> int:
    check_ids(job_id)
    with Client(*where) as client:
        job = client.retry(job_id, dependents=dependents)
    if json_out:
        print_json(job)
    else:
        print(f"{job.id} {job.state}")
    return 0


def run_pause(queue: str, create: bool, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        print_queue(client.pause(queue, create=create), json_out)
    return 0


def run_resume(queue: str, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        print_queue(client.resume(queue), json_out)
    return 0


def run_limit(queue: str, n: int, create: bool, json_out: bool, where: Where) -> int:
    if n < 0:
        raise BadInput(f"N is how many jobs may run at once: 0 (no cap) or more, got {n}")
    with Client(*where) as client:
        print_queue(client.limit(queue, n, create=create), json_out)
    return 0


def run_maintenance(force_vacuum: bool, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        report = client.maintenance(force_vacuum=force_vacuum)
    if json_out:
        print_json(fields_of(report))
    elif report.skipped:
        print(f"nothing done: {report.skipped}")
    else:
        print(
            f"deleted {report.jobs_deleted} jobs and {report.logs_deleted} logs; "
            f"database {report.db_bytes_before / 1e6:.2f} MB -> "
            f"{report.db_bytes_after / 1e6:.2f} MB"
            f"{' (vacuumed)' if report.vacuumed else ''}; integrity {report.integrity}; "
            f"{report.duration_ms:.0f} ms"
        )
    return 0


def run_shutdown(now: bool, where: Where) -> int:
    with Client(*where) as client:
        client.shutdown(now=now)
    if now:
        print("supervisor is stopping now (running jobs go back to the queue)")
    else:
        print("supervisor is shutting down (running jobs get the drain timeout)")
    return 0


def print_queue(info: QueueInfo, json_out: bool) -> None:
    if json_out:
        print_json(info)
    else:
        state = "paused" if info.paused else "running"
        cap = f"limit {info.limit}" if info.limit else "no limit"
        print(printable(f"{info.name}: {state}, {cap}"))
