"""``semctl schedule``: add, list, show, pause, resume, remove, run and apply schedules.

The work of list, show, pause, resume, remove and run is in schedule_cmds.py, which
semctl's fast path (fast_path.py) calls too, without typer; add and apply are here
alone. Each command calls the ``Client`` method of the same verb
(:mod:`semantica.control.schedule_client`) and, with ``--json``, prints one JSON
document (a schedule, a list of them, a job, or what apply changed). Errors
are one line and semctl's exit status: 2 bad input (a bad expression, an
existing name without ``--replace``, a bad schedules file), 5 no such schedule.

``add`` takes ``enqueue``'s job options (job_options.py) and builds the payload
as ``enqueue`` does (``enqueue_cmd.job_data``): an exec command after ``--``
runs in this directory with this environment, captured now and stored in the
schedule. ``apply`` reads a TOML file (schedule_file.py), which captures
neither; with ``--dry-run`` it first reads the schedules as they are, to name
the keys each update would change. cronsim, tomllib and zoneinfo are imported
only by the commands that use them: semctl loads this module on every run to
register the group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from semantica.control import job_options, schedule_cmds
from semantica.control.cli_common import JsonOpt, State, edge, new_client, print_json
from semantica.control.terminal import printable
from semantica.schedules import CATCH_UP_CHOICES, OVERLAP_CHOICES

schedule_app = typer.Typer(
    name="schedule",
    help="Jobs made on a schedule: cron expressions or intervals, in a time zone.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


@schedule_app.command()
def add(
    name: NameArg,
    type: job_options.TypeArg,
    argv: job_options.ArgvArg = None,
    cron: Annotated[
        str | None,
        typer.Option(help='Five cron fields, e.g. "0 3 * * *" (in --tz).', show_default=False),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(help="An interval: 90s, 15m, 1h30m, 2d or seconds.", show_default=False),
    ] = None,
    tz: Annotated[
        str | None,
        typer.Option(help="IANA time zone of --cron [default: yours].", show_default=False),
    ] = None,
    jitter: Annotated[
        str, typer.Option(help="Each slot's job is due up to this long after the slot.")
    ] = "0s",
    catch_up: Annotated[
        str,
        typer.Option(help=f"Slots missed while down: {' or '.join(CATCH_UP_CHOICES)} job."),
    ] = "one",
    overlap: Annotated[
        str,
        typer.Option(help=f"A slot while the last job is live: {' or '.join(OVERLAP_CHOICES)} it."),
    ] = "skip",
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused.")] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Replace a schedule of that name.")
    ] = False,
    queue: job_options.Queue = "default",
    subject: job_options.Subject = None,
    priority: job_options.Priority = 0,
    payload: job_options.Payload = None,
    payload_file: job_options.PayloadFile = None,
    max_attempts: job_options.MaxAttempts = 3,
    timeout: job_options.Timeout = None,
    backoff: job_options.Backoff = None,
    require_charging: job_options.RequireCharging = False,
    require_idle: job_options.RequireIdle = False,
    env: job_options.Env = None,
    no_env: job_options.NoEnv = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a schedule: a job of TYPE at every slot; print when it next fires.

    An exec command runs in your directory with your environment (stored in the schedule).

    Examples: semctl schedule add nightly --cron "0 3 * * *" exec -- backup.sh;
    semctl schedule add index --every 15m INDEX_FILE --payload '{"path": "src"}'
    """
    from semantica.control.enqueue_cmd import job_data

    with edge():
        data = job_data(type, argv, payload, payload_file, env, no_env, "semctl schedule add")
        # The client connects on its first request, after it checked the spec: bad
        # input is exit 2 even with no supervisor running.
        client = new_client()
        try:
            schedule = client.schedule(
                name,
                type,
                data,
                cron=cron,
                every=every,
                tz=tz,
                jitter=jitter,
                catch_up=catch_up,
                overlap=overlap,
                paused=paused,
                replace=replace,
                queue=queue,
                subject=subject,
                priority=priority,
                max_attempts=max_attempts,
                timeout=timeout,
                backoff=backoff,
                require_charging=require_charging,
                require_idle=require_idle,
            )
        finally:
            client.close()
    schedule_cmds.print_one(schedule, json_out, "added")


@schedule_app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Every schedule: when, next fire, last run and its outcome, paused."""
    with edge():
        schedule_cmds.run_list(json_out, _where())


@schedule_app.command()
def show(
    name: NameArg,
    runs: Annotated[int, typer.Option(help="How many of the last runs to list (0-100).")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """One schedule: its timing, its job template, and its last runs with their jobs."""
    with edge():
        schedule_cmds.run_show(name, runs, json_out, _where())


@schedule_app.command()
def pause(name: NameArg, json_out: JsonOpt = False) -> None:
    """Fire no job until resumed (the slots that pass meanwhile give no job)."""
    with edge():
        schedule_cmds.run_pause(name, json_out, _where())


@schedule_app.command()
def resume(name: NameArg, json_out: JsonOpt = False) -> None:
    """Fire again, from the first slot after now."""
    with edge():
        schedule_cmds.run_resume(name, json_out, _where())


@schedule_app.command()
def remove(name: NameArg, json_out: JsonOpt = False) -> None:
    """Remove a schedule (the jobs it made stay)."""
    with edge():
        schedule_cmds.run_remove(name, json_out, _where())


@schedule_app.command()
def run(name: NameArg, json_out: JsonOpt = False) -> None:
    """Make the schedule's job now (its slots do not move); print the job's id."""
    with edge():
        schedule_cmds.run_run(name, json_out, _where())


@schedule_app.command()
def apply(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A schedules file (TOML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; change nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Make the schedules exactly those of FILE: create, update, remove; print the diff.

    One change, all or nothing: any error in the file changes nothing. With
    --dry-run, each update also names the keys it changes.
    """
    from semantica.control.schedule_file import read_schedules

    with edge():
        specs = read_schedules(file)
        with new_client() as client:
            # A dry run is the preview: it reads the schedules as they are, only to say
            # what each update would change (the apply is one transaction of its own).
            before = client.schedules() if dry_run and not json_out else []
            changes = client.apply_schedules(specs, dry_run=dry_run)
    if json_out:
        print_json(changes)
        return
    from semantica.control.schedule_render import diff_lines

    for line in diff_lines(changes, specs, before):
        print(printable(line))


def _where() -> tuple[str | None, str | None]:
    """``(home, socket)``: the ``--home`` and ``--socket`` semctl was given."""
    return State.home, State.socket
