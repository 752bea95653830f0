"""The work of the live views, ``semctl tail [ID]`` and ``semctl top``, without typer.

``tail`` follows one job's log until it ends, or (without ID) every job event as it
happens; ``top`` is the dashboard (top.py draws it, with rich), live or one frame. A
person starts these to watch something happen now, and each ``semctl`` is a new
process: they must start quickly. Both ways in call the functions here, with the same
output and exit status: the typer commands of cli.py, and the fast path (fast_path.py).

Contract, as read_cmds.py's: check the input, connect (``where``), make the request or
stream, print, and return the exit status; library errors are raised for the caller to
report (one line, its code). Ctrl-C ends either quietly with exit 0 (the user stopped
watching, nothing failed).

* :func:`run_tail` with ID: each log line as the job wrote it (like ``cat``:
  terminal.write_output), or with ``--json`` one document per line (``{"id", "line"}``)
  and the job itself at the end; then how the job ended, on stderr (stdout stays the
  job's output); exit 0 if it ended DONE, else 1. Without ID: one line per event (its
  data escaped by :func:`~semantica.control.terminal.printable`), or one JSON document
  each, until interrupted. Every line is flushed as it comes, so a pipe sees it at once.
* :func:`run_top`: ``--json`` prints one snapshot (no rich); ``--once``, or any output
  that is not a terminal, one frame; else the live dashboard until q or Ctrl-C.
"""

from __future__ import annotations

import sys

from semantica.control.client import Client
from semantica.control.read_cmds import Where, check_ids, fields_of, print_json
from semantica.control.terminal import error_text, printable, write_output
from semantica.errors import EXIT_JOB_FAILED
from semantica.models import Job, JobState
from semantica.protocol import JobEvent


def run_tail(job_id: int | None, json_out: bool, where: Where) -> int:
    check_ids(job_id)
    try:
        with Client(*where) as client:
            if job_id is None:
                for event in client.events():
                    print_event(event, json_out)
                return 0  # (the stream ends only with the supervisor)
            for line in client.follow(job_id):
                if json_out:
                    print_json({"id": job_id, "line": line})
                    sys.stdout.flush()
                else:
                    write_output([line])  # as the job wrote it
            job = client.get(job_id)
    except KeyboardInterrupt:
        return 0
    if json_out:
        print_json(job)
    else:
        # On stderr: stdout stays the job's output, as the job wrote it.
        print(printable(f"--- {how_it_ended(job)} ---"), file=sys.stderr)
    return 0 if job.state == JobState.DONE else EXIT_JOB_FAILED


def how_it_ended(job: Job) -> str:
    """``job 5 DONE after attempt 1 of 3, took 0.210 s``, with the error if there is one."""
    words = f"job {job.id} {job.state} after attempt {job.attempts} of {job.max_attempts}"
    if job.started_at is not None and job.finished_at is not None:
        words += f", took {(job.finished_at - job.started_at).total_seconds():.3f} s"
    if job.error is not None and job.state != JobState.DONE:
        words += f": {error_text(job)}"
    return words


def print_event(event: JobEvent, json_out: bool) -> None:
    if json_out:
        print_json(fields_of(event))
    else:
        at = event.at.astimezone().strftime("%H:%M:%S.%f")[:-3]
        details = []
        if event.attempt is not None:
            details.append(f"attempt {event.attempt}")
        if event.worker_pid is not None:
            details.append(f"worker {event.worker_pid}")
        if event.error is not None:
            details.append(f"{event.error.kind}: {event.error.message}")
        extra = f" ({', '.join(details)})" if details else ""
        print(printable(f"{at} job {event.job_id} {event.type} {event.event}{extra}"))
    sys.stdout.flush()


def run_top(once: bool, json_out: bool, where: Where) -> int:
    from semantica.control.terminal import is_terminal

    if not is_terminal():
        once = True  # a live screen needs a terminal; one frame is what a pipe can take
    if json_out:
        with Client(*where) as client:
            snapshot = client.top()
        print_json(fields_of(snapshot))
        return 0
    from semantica.control import top as dashboard

    try:
        with Client(*where) as client:
            if once:
                dashboard.print_once(client)
            else:
                dashboard.run(client)
    except KeyboardInterrupt:
        pass
    return 0
