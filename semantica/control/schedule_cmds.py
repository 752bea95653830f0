"""The work of ``semctl schedule list``, ``show``, ``pause``, ``resume``, ``remove`` and
``run``, without typer (schedule_cmd.py: the typer commands, ``add`` and ``apply``).

Each ``semctl`` is a new process; these six are typed as often as ``list`` and ``show``,
and importing typer (and every command module cli.py registers) cost more than the rest
of such a command. Both ways in call the functions here, with the same output and exit
status: the typer commands of schedule_cmd.py, and the fast path (fast_path.py), which
parses their common forms itself. ``add`` and ``apply`` stay typer's alone: their option
sets are large (``add`` takes every job option of ``enqueue``; ``apply`` reads a file),
and a person types them rarely, once per schedule rather than once per look.

Contract, as read_cmds.py's: each ``run_*`` function connects (``where``: the ``--home``
and ``--socket`` given, else the environment's), makes its request, prints the answer
(``--json``: one JSON document; else text for people, every piece of schedule data
escaped by :mod:`semantica.control.terminal`) and returns the exit status (0). Library
errors (no supervisor, no such schedule: exit 5, a bad ``--runs``: exit 2) are raised as
:class:`~semantica.errors.SemanticaError` for the caller to report: both callers print
the same one line and exit with its code. Importing this module is cheap: the views
(schedule_render.py, with zoneinfo) are loaded only to draw, never for ``--json``.
"""

from __future__ import annotations

from semantica.control.client import Client
from semantica.control.read_cmds import Where, print_json
from semantica.control.terminal import printable
from semantica.schedules import Schedule


def run_list(json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        schedules = client.schedules()
    if json_out:
        print_json(schedules)
    else:
        from semantica.control.schedule_render import schedule_table

        schedule_table(schedules)
    return 0


def run_show(name: str, runs: int, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        schedule = client.get_schedule(name, runs)
    if json_out:
        print_json(schedule)
    else:
        from semantica.control.schedule_render import schedule_details

        schedule_details(schedule)
    return 0


def run_pause(name: str, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        schedule = client.pause_schedule(name)
    print_one(schedule, json_out, "paused")
    return 0


def run_resume(name: str, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        schedule = client.resume_schedule(name)
    print_one(schedule, json_out, "resumed")
    return 0


def run_remove(name: str, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        client.remove_schedule(name)
    if json_out:
        print_json({"removed": name})
    else:
        print(printable(f"removed {name}"))
    return 0


def run_run(name: str, json_out: bool, where: Where) -> int:
    with Client(*where) as client:
        job = client.run_schedule(name)
    if json_out:
        print_json(job)
    else:
        print(job.id)
    return 0


def print_one(schedule: Schedule, json_out: bool, done: str) -> None:
    """``paused nightly: cron 0 3 * * * UTC, next 2026-12-07 03:00 UTC`` (``add`` too)."""
    if json_out:
        print_json(schedule)
        return
    from semantica.control.schedule_render import next_text, when

    next_fire = next_text(schedule)
    print(printable(f"{done} {schedule.name}: {when(schedule)}, next {next_fire}"))
