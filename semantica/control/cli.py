"""``semctl``: the control client's command line, a thin layer over :class:`Client`.

Each command calls the ``Client`` method of the same name. Library errors
become a one-line message on stderr and the exit status the README documents (0
ok, 1 a waited job did not end DONE, 2 bad input, 3 no supervisor, 4 refused, 5
no such job). ``--json`` prints one JSON document and never rich markup. rich is
imported only to draw for people, so ``semctl enqueue`` starts fast.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from semantica import __version__
from semantica.control import job_options, live_cmds, read_cmds, web_cmd, write_cmds
from semantica.control.cli_common import (
    JsonOpt,
    State,
    edge,
    new_client,
)
from semantica.control.enqueue_cmd import run_enqueue
from semantica.control.schedule_cmd import schedule_app
from semantica.control.service import service_app

app = typer.Typer(
    name="semctl",
    help="Control a Semantica supervisor: enqueue jobs, watch them, manage the engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: For commands that take numbers: click reads "-1" as an unknown option ("No such
#: option: -1"); this lets it through as the argument it is, for a clear message below.
NUMBERS = {"ignore_unknown_options": True}


def _show_version(value: bool) -> None:
    if value:
        print(f"semctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    home: Annotated[
        str | None, typer.Option(help="State directory [env: SEMANTICA_HOME].", show_default=False)
    ] = None,
    socket: Annotated[
        str | None, typer.Option(help="Control socket [env: SEMANTICA_SOCKET].", show_default=False)
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    State.home, State.socket = home, socket


def where() -> read_cmds.Where:
    """``(home, socket)``: the ``--home`` and ``--socket`` semctl was given."""
    return State.home, State.socket


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)


@app.command()
def enqueue(
    type: job_options.TypeArg,
    argv: job_options.ArgvArg = None,
    queue: job_options.Queue = "default",
    subject: job_options.Subject = None,
    generation: Annotated[
        int | None, typer.Option(help="Generation within the subject.", show_default=False)
    ] = None,
    priority: job_options.Priority = 0,
    payload: job_options.Payload = None,
    payload_file: job_options.PayloadFile = None,
    max_attempts: job_options.MaxAttempts = 3,
    timeout: job_options.Timeout = None,
    delay: Annotated[
        float | None,
        typer.Option(help="Start no sooner than this many seconds.", show_default=False),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Start no sooner than this ISO 8601 time.", show_default=False),
    ] = None,
    backoff: job_options.Backoff = None,
    require_charging: job_options.RequireCharging = False,
    require_idle: job_options.RequireIdle = False,
    supersede_running: Annotated[
        bool, typer.Option(help="Also cancel a running older generation of the subject.")
    ] = False,
    env: job_options.Env = None,
    no_env: job_options.NoEnv = False,
    after: Annotated[
        list[int] | None,
        typer.Option(
            "--after",
            metavar="ID",
            help="Start once this job is DONE; cancelled if it ends otherwise (repeatable).",
            show_default=False,
        ),
    ] = None,
    after_end: Annotated[
        list[int] | None,
        typer.Option(
            "--after-end",
            metavar="ID",
            help="Start once this job has ended, however it ended (repeatable).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a job and print its id.

    An exec command runs in your directory with your environment (stored in the job).

    Example: semctl enqueue exec -- make build
    """
    with edge():
        run_enqueue(
            type,
            argv,
            payload=payload,
            payload_file=payload_file,
            json_out=json_out,
            client=new_client(),
            queue=queue,
            subject=subject,
            generation=generation,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            delay=delay,
            at=at,
            backoff=backoff,
            require_charging=require_charging,
            require_idle=require_idle,
            supersede_running=supersede_running,
            env=env,
            no_env=no_env,
            after=[str(job_id) for job_id in after or ()],
            after_end=[str(job_id) for job_id in after_end or ()],
        )


@app.command(context_settings=NUMBERS)
def show(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    json_out: JsonOpt = False,
) -> None:
    """Show one job: state, attempts, timings, error, result."""
    with edge():
        code = read_cmds.run_show(job_id, json_out, where())
    _exit(code)


@app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option(help="Only jobs in this state.", show_default=False)
    ] = None,
    queue: Annotated[
        str | None, typer.Option(help="Only jobs of this queue.", show_default=False)
    ] = None,
    type: Annotated[
        str | None, typer.Option("--type", help="Only jobs of this type.", show_default=False)
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Only jobs about this subject.", show_default=False)
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """List jobs, newest first; the last line says if more match than --limit shows."""
    with edge():
        code = read_cmds.run_list(
            where(),
            state=state,
            queue=queue,
            type=type,
            subject=subject,
            limit=limit,
            json_out=json_out,
        )
    _exit(code)


@app.command(context_settings=NUMBERS)
def wait(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...")],
    timeout: Annotated[
        float | None, typer.Option(help="Give up after this many seconds.", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Wait until the jobs finish; exit 0 only if all of them are DONE."""
    with edge():
        code = read_cmds.run_wait(job_ids, timeout, json_out, where())
    _exit(code)


@app.command(context_settings=NUMBERS)
def logs(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    lines: Annotated[
        int | None, typer.Option("-n", "--lines", help="Only the last N lines.", show_default=False)
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print a job's log (the last N lines with -n)."""
    with edge():
        code = read_cmds.run_logs(job_id, lines, json_out, where())
    _exit(code)


@app.command(context_settings=NUMBERS)
def tail(
    job_id: Annotated[int | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="One JSON document per line: per log line, or per event."),
    ] = False,
) -> None:
    """Follow a job's log until it ends (exit 0 if DONE); without ID, every job event.

    Examples: `semctl tail 12`; `semctl tail --json | jq .`
    """
    with edge():
        code = live_cmds.run_tail(job_id, json_out, where())
    _exit(code)


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Counts by state, workers, database size, uptime, version, schedules; on a shared
    store, every node and its workers."""
    with edge():
        code = read_cmds.run_status(json_out, where())
    _exit(code)


@app.command(context_settings=NUMBERS)
def cancel(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...")],
    json_out: JsonOpt = False,
) -> None:
    """Cancel jobs: queued ones at once, running ones stopped (returns once they ended).

    Example: semctl cancel 12 13
    """
    with edge():
        code = write_cmds.run_cancel(job_ids, json_out, where())
    _exit(code)


@app.command(context_settings=NUMBERS)
def retry(
    job_id: Annotated[int, typer.Argument(metavar="ID")],
    dependents: Annotated[
        bool,
        typer.Option(
            "--dependents", help="Also bring back the jobs cancelled because this one failed."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Put a FAILED or CANCELLED job back in the queue with a fresh attempt budget."""
    with edge():
        code = write_cmds.run_retry(job_id, dependents, json_out, where())
    _exit(code)


CreateOpt = Annotated[
    bool,
    typer.Option(
        "--create", help="Make QUEUE if no job or setting named it yet (else that is an error)."
    ),
]


@app.command()
def pause(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    create: CreateOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Start no new job from QUEUE (running jobs go on).

    Example: semctl pause --create nightly   (before its first job)
    """
    with edge():
        code = write_cmds.run_pause(queue, create, json_out, where())
    _exit(code)


@app.command()
def resume(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    json_out: JsonOpt = False,
) -> None:
    """Start jobs from QUEUE again (a queue never seen is an error)."""
    with edge():
        code = write_cmds.run_resume(queue, json_out, where())
    _exit(code)


@app.command(context_settings=NUMBERS)
def limit(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    n: Annotated[int, typer.Argument(metavar="N", help="Most jobs running at once; 0 for no cap.")],
    create: CreateOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run at most N jobs of QUEUE at once (0: no cap)."""
    with edge():
        code = write_cmds.run_limit(queue, n, create, json_out, where())
    _exit(code)


@app.command()
def queues(json_out: JsonOpt = False) -> None:
    """List queues with their counts by state, paused flag and limit."""
    with edge():
        code = read_cmds.run_queues(json_out, where())
    _exit(code)


@app.command()
def top(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one snapshot as a JSON document (implies --once).")
    ] = False,
) -> None:
    """Live dashboard: workers, their jobs, CPU and memory, queues, rates, failures (q quits).

    Into a pipe or a file (not a terminal) it prints one frame, as --once.
    """
    with edge():
        code = live_cmds.run_top(once, json_out, where())
    _exit(code)


@app.command()
def maintenance(
    force_vacuum: Annotated[
        bool,
        typer.Option(
            "--force-vacuum", help="Rewrite the whole database file (writers wait meanwhile)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete old finished jobs and their logs, checkpoint, vacuum; print sizes before and after."""
    with edge():
        code = write_cmds.run_maintenance(force_vacuum, json_out, where())
    _exit(code)


@app.command()
def metrics(json_out: JsonOpt = False) -> None:
    """Print the Prometheus text exposition (--json: each family, its type and samples)."""
    with edge():
        code = read_cmds.run_metrics(json_out, where())
    _exit(code)


@app.command()
def shutdown(
    now: Annotated[
        bool, typer.Option("--now", help="Do not wait for running jobs; re-queue them.")
    ] = False,
) -> None:
    """Drain and stop the supervisor, as SIGTERM does."""
    with edge():
        code = write_cmds.run_shutdown(now, where())
    _exit(code)


app.add_typer(schedule_app, name="schedule")
app.add_typer(service_app, name="service")
app.command("web")(web_cmd.web)


def main() -> int:
    """Run the typer CLI; returns the exit status.

    A usage error (unknown option, missing argument, bad number) is one line on
    stderr and exit 2, like every other bad input, instead of click's four.
    """
    try:
        code = app(standalone_mode=False)
    except _CLICK_ERRORS.ClickException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `semctl` alone: the help, as before
            exc.show()
        elif isinstance(exc, _CLICK_ERRORS.UsageError):
            where = exc.ctx.command_path if exc.ctx is not None else "semctl"
            print(f"semctl: {exc.format_message()} (see `{where} --help`)", file=sys.stderr)
        else:
            print(f"semctl: {exc.format_message()}", file=sys.stderr)
        return int(exc.exit_code)
    except typer.Abort:
        print("semctl: aborted", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


# click's exceptions, or the copy of them that newer typers carry inside.
_CLICK_ERRORS: Any = sys.modules[typer.BadParameter.__module__]
