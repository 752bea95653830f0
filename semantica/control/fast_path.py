"""The commands a person types most, run without typer: ``semctl --help``, ``status``,
``list``, ``show ID``, ``wait ID...``, ``logs ID``, ``queues``, ``cancel ID...``,
``retry ID``, ``pause QUEUE``, ``resume QUEUE``, ``limit QUEUE N``, ``metrics``,
``maintenance``, ``shutdown``, ``tail [ID]``, ``top`` (drawn with rich),
``schedule list|show|pause|resume|remove|run`` (and ``enqueue``, in enqueue_cmd.py).
``schedule add`` and ``schedule apply`` stay typer's: their option sets are large
(every job option; a file) and they are typed rarely.

Each ``semctl`` is a new process, and importing typer (and, through cli.py, every
command module) costs more than the rest of such a command together. This module
parses the common forms of these commands itself: ``--home`` / ``--socket`` before
the command, then the command's own options (``--opt value``, ``--opt=value``, a
short option as ``-n 5``) and arguments in any order. Anything else (``--help``,
an unknown or repeated option, a value that starts with ``-``, a word where a
number goes) returns None, and the full typer CLI runs instead and reports it exactly as
it always does. Both run the same functions (read_cmds.py, write_cmds.py,
schedule_cmds.py, live_cmds.py), so output and exit status are the same. A unit test
checks that the tables here and the typer commands agree.

Importing this module costs nothing beyond Python itself: what a command needs
is imported once it is known to run.
"""

# Annotations are evaluated here, not postponed (no `from __future__ import
# annotations`): typing.NamedTuple compiles each postponed field type, about 1 ms
# of every `semctl` start for the two classes here.

import os
import sys
from typing import Any, NamedTuple


class Command(NamedTuple):
    """What one command takes, as the typer command declares it."""

    #: Options that take a value: flag -> (keyword, converter).
    values: dict[str, tuple[str, Any]]
    #: Options that are switches: flag -> keyword.
    switches: dict[str, str]
    #: The keyword of the arguments, how many at least and at most (None: any), and
    #: their converter (job ids: int). None: the command takes no argument (or only
    #: ``fixed`` ones).
    arguments: tuple[str, int, int | None, Any] | None
    #: Every keyword's value when its option is not given.
    defaults: dict[str, Any]
    #: Arguments of different kinds, each required, in order: (keyword, converter).
    fixed: tuple[tuple[str, Any], ...] = ()


JSON = {"--json": "json_out"}

COMMANDS: dict[str, Command] = {
    "status": Command({}, JSON, None, {"json_out": False}),
    "list": Command(
        {
            "--state": ("state", str),
            "--queue": ("queue", str),
            "--type": ("type", str),
            "--subject": ("subject", str),
            "--limit": ("limit", int),
        },
        JSON,
        None,
        {
            "state": None,
            "queue": None,
            "type": None,
            "subject": None,
            "limit": 50,
            "json_out": False,
        },
    ),
    "show": Command({}, JSON, ("job_id", 1, 1, int), {"json_out": False}),
    "wait": Command(
        {"--timeout": ("timeout", float)},
        JSON,
        ("job_ids", 1, None, int),
        {"timeout": None, "json_out": False},
    ),
    "logs": Command(
        {"-n": ("lines", int), "--lines": ("lines", int)},
        JSON,
        ("job_id", 1, 1, int),
        {"lines": None, "json_out": False},
    ),
    "queues": Command({}, JSON, None, {"json_out": False}),
    "cancel": Command({}, JSON, ("job_ids", 1, None, int), {"json_out": False}),
    "retry": Command(
        {},
        {**JSON, "--dependents": "dependents"},
        ("job_id", 1, 1, int),
        {"dependents": False, "json_out": False},
    ),
    "pause": Command(
        {},
        {**JSON, "--create": "create"},
        ("queue", 1, 1, str),
        {"create": False, "json_out": False},
    ),
    "resume": Command({}, JSON, ("queue", 1, 1, str), {"json_out": False}),
    "limit": Command(
        {},
        {**JSON, "--create": "create"},
        None,
        {"create": False, "json_out": False},
        (("queue", str), ("n", int)),
    ),
    "metrics": Command({}, JSON, None, {"json_out": False}),
    "maintenance": Command(
        {},
        {**JSON, "--force-vacuum": "force_vacuum"},
        None,
        {"force_vacuum": False, "json_out": False},
    ),
    "shutdown": Command({}, {"--now": "now"}, None, {"now": False}),
    "tail": Command({}, JSON, ("job_id", 0, 1, int), {"job_id": None, "json_out": False}),
    "top": Command({}, {**JSON, "--once": "once"}, None, {"once": False, "json_out": False}),
    # A group's commands are named with their group: `semctl schedule list` is
    # "schedule list" (the group takes no option of its own before the command).
    "schedule list": Command({}, JSON, None, {"json_out": False}),
    "schedule show": Command(
        {"--runs": ("runs", int)}, JSON, ("name", 1, 1, str), {"runs": 20, "json_out": False}
    ),
    "schedule pause": Command({}, JSON, ("name", 1, 1, str), {"json_out": False}),
    "schedule resume": Command({}, JSON, ("name", 1, 1, str), {"json_out": False}),
    "schedule remove": Command({}, JSON, ("name", 1, 1, str), {"json_out": False}),
    "schedule run": Command({}, JSON, ("name", 1, 1, str), {"json_out": False}),
}

#: The groups whose commands are in the table, as "GROUP COMMAND".
GROUPS = ("schedule",)

#: semctl's own options, given before the command: flag -> keyword.
GLOBAL_OPTIONS = {"--home": "home", "--socket": "socket"}


class Parsed(NamedTuple):
    command: str
    #: ``(home, socket)``: where to connect (None: from the environment).
    where: tuple[str | None, str | None]
    #: The command's keywords (its arguments under the keyword the table names).
    options: dict[str, Any]
    #: What follows the command's name, unparsed (for enqueue, which parses its own).
    rest: list[str]


#: What asks for semctl's own help (typer's help option names).
HELP = ("--help", "-h")


def parse(argv: list[str]) -> Parsed | None:
    """The command and its options for the forms this path knows, else None.

    ``semctl --help`` is the command ``--help`` (see :func:`top_help`).
    """
    if len(argv) == 1 and argv[0] in HELP:
        return Parsed("--help", (None, None), {}, [])
    where: dict[str, str | None] = {"home": None, "socket": None}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        taken = _value(argv, i, GLOBAL_OPTIONS, where)
        if taken is None:
            return None  # --version, --help, a typo: typer answers
        i = taken
    if i == len(argv):
        return None  # `semctl` alone: typer prints the help
    command, rest = argv[i], argv[i + 1 :]
    if " " in command:
        return None  # (`semctl "schedule list"`: typer knows no such command)
    spot = (where["home"], where["socket"])
    if command == "enqueue":
        return Parsed(command, spot, {}, rest)
    if command in GROUPS and rest:
        command, rest = f"{command} {rest[0]}", rest[1:]  # (`schedule --help`: no such key)
    table = COMMANDS.get(command)
    if table is None:
        return None
    options = _command_options(table, rest)
    return None if options is None else Parsed(command, spot, options, rest)


def _value(argv: list[str], i: int, flags: dict[str, str], into: dict[str, Any]) -> int | None:
    """Read the option at ``argv[i]`` (one of ``flags``, taking a value) into ``into``;
    the index after it, or None if it is not one this path takes as it stands."""
    arg = argv[i]
    if arg.startswith("--"):
        flag, has_value, text = arg.partition("=")
    else:
        flag, has_value, text = arg, "", ""  # (`-n5` and `-n=5` are typer's)
    keyword = flags.get(flag)
    if keyword is None or into.get(keyword) is not None:
        return None  # unknown, or given twice
    if not has_value:
        if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
            return None  # missing, or a value typer may read otherwise
        text = argv[i + 1]
        i += 1
    into[keyword] = text
    return i + 1


def _command_options(table: Command, args: list[str]) -> dict[str, Any] | None:
    given: dict[str, Any] = {}
    positional: list[str] = []
    flags = {flag: keyword for flag, (keyword, _) in table.values.items()}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            positional.append(arg)
            i += 1
        elif arg in table.switches:
            keyword = table.switches[arg]
            if keyword in given:
                return None
            given[keyword] = True
            i += 1
        else:
            taken = _value(args, i, flags, given)
            if taken is None:
                return None  # --help, -1, --, an unknown option: typer explains
            i = taken
    options = dict(table.defaults)
    try:
        for keyword, convert in table.values.values():
            if keyword in given:
                options[keyword] = convert(given[keyword])
        for keyword in table.switches.values():
            options[keyword] = given.get(keyword, options[keyword])
        if table.arguments is None:
            if len(positional) != len(table.fixed):
                return None
            for (keyword, convert), value in zip(table.fixed, positional, strict=True):
                options[keyword] = convert(value)
            return options
        keyword, least, most, convert = table.arguments
        if len(positional) < least or (most is not None and len(positional) > most):
            return None
        values = [convert(value) for value in positional]
    except ValueError:
        return None  # typer's message for a bad number
    if most == 1:
        options[keyword] = values[0] if values else options[keyword]  # (tail: ID or none)
    else:
        options[keyword] = values
    return options


def top_help() -> str | None:
    """``semctl --help`` as typer would print it here, if help_text.py has it: at 80
    columns or more (click's layout is the same from 80 up), for a program click names
    ``semctl`` or ``python -m semantica.control`` (the usage line fits either way)."""
    package = getattr(sys.modules.get("__main__"), "__package__", None)
    script = os.path.basename(sys.argv[0])
    if not package and script == "semctl":
        program = "semctl"
    elif package == "semantica.control" and script == "__main__.py":
        program = "python -m semantica.control"
    else:
        return None  # click names it otherwise
    # As shutil.get_terminal_size, which click asks (shutil itself costs 3 ms to import).
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    if (columns or 80) < 80:
        return None
    from semantica.control.help_text import TOP

    return TOP.replace("Usage: semctl ", f"Usage: {program} ", 1)


def run(parsed: Parsed) -> int:
    """Run a parsed command; its exit status."""
    from semantica.control.terminal import printable
    from semantica.errors import SemanticaError

    try:
        if parsed.command.startswith("schedule "):
            return _run_schedule(parsed)
        return _run_command(parsed)
    except SemanticaError as exc:
        sys.stderr.write(f"semctl: {printable(exc.message)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130  # as typer: Ctrl-C in `semctl wait` is 128 + SIGINT, quietly
    except BrokenPipeError:
        # The reader went away (`semctl list | head`): quietly, as typer does, and
        # nothing more may reach the pipe, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run_command(parsed: Parsed) -> int:
    from semantica.control import read_cmds, write_cmds

    o, where = parsed.options, parsed.where
    if parsed.command == "status":
        return read_cmds.run_status(o["json_out"], where)
    if parsed.command == "list":
        return read_cmds.run_list(where, **o)
    if parsed.command == "show":
        return read_cmds.run_show(o["job_id"], o["json_out"], where)
    if parsed.command == "wait":
        return read_cmds.run_wait(o["job_ids"], o["timeout"], o["json_out"], where)
    if parsed.command == "logs":
        return read_cmds.run_logs(o["job_id"], o["lines"], o["json_out"], where)
    if parsed.command == "queues":
        return read_cmds.run_queues(o["json_out"], where)
    if parsed.command == "cancel":
        return write_cmds.run_cancel(o["job_ids"], o["json_out"], where)
    if parsed.command == "retry":
        return write_cmds.run_retry(o["job_id"], o["dependents"], o["json_out"], where)
    if parsed.command == "pause":
        return write_cmds.run_pause(o["queue"], o["create"], o["json_out"], where)
    if parsed.command == "resume":
        return write_cmds.run_resume(o["queue"], o["json_out"], where)
    if parsed.command == "limit":
        return write_cmds.run_limit(o["queue"], o["n"], o["create"], o["json_out"], where)
    if parsed.command == "metrics":
        return read_cmds.run_metrics(o["json_out"], where)
    if parsed.command == "maintenance":
        return write_cmds.run_maintenance(o["force_vacuum"], o["json_out"], where)
    if parsed.command == "tail":
        from semantica.control.live_cmds import run_tail

        return run_tail(o["job_id"], o["json_out"], where)
    if parsed.command == "top":
        from semantica.control.live_cmds import run_top

        return run_top(o["once"], o["json_out"], where)
    return write_cmds.run_shutdown(o["now"], where)


def _run_schedule(parsed: Parsed) -> int:
    """A ``schedule`` command (its work is in schedule_cmds.py)."""
    from semantica.control import schedule_cmds

    o, where, verb = parsed.options, parsed.where, parsed.command.partition(" ")[2]
    if verb == "list":
        return schedule_cmds.run_list(o["json_out"], where)
    if verb == "show":
        return schedule_cmds.run_show(o["name"], o["runs"], o["json_out"], where)
    if verb == "pause":
        return schedule_cmds.run_pause(o["name"], o["json_out"], where)
    if verb == "resume":
        return schedule_cmds.run_resume(o["name"], o["json_out"], where)
    if verb == "remove":
        return schedule_cmds.run_remove(o["name"], o["json_out"], where)
    return schedule_cmds.run_run(o["name"], o["json_out"], where)
