"""semctl's fast path for the commands people type most parses like the typer commands,
hands everything else to typer, and imports neither typer nor anything a command does not use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from semantica.control.cli import app
from semantica.control.fast_path import COMMANDS, GLOBAL_OPTIONS, parse

HEAVY = ("typer", "click", "rich", "trio", "structlog", "psutil", "cronsim", "tomllib", "zoneinfo")
#: The socket module's wrapping of _socket (its enums, selectors), which a client never uses.
UNUSED_STDLIB = ("socket", "selectors")


def _typer_command(name: str) -> Any:
    """The click command of ``name``; a group's command as ``"schedule list"``."""
    command: Any = typer.main.get_command(app)
    for word in name.split():
        command = command.commands[word]
    return command


def test_the_fast_path_knows_the_schedule_commands_but_add_and_apply() -> None:
    group = set(_typer_command("schedule").commands)
    assert {name.split()[1] for name in COMMANDS if name.startswith("schedule ")} == group - {
        "add",
        "apply",
    }


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_fast_path_knows_exactly_each_typer_commands_options(name: str) -> None:
    """Every option of the typer command is in the table (with its default), and nothing
    else; its arguments are the table's (how many, and numbers)."""
    table = COMMANDS[name]
    command = _typer_command(name)
    options: dict[str, Any] = {}
    arguments = []
    for param in command.params:
        if param.param_type_name == "argument":
            arguments.append(param)
            continue
        for opt in param.opts:
            options[opt] = param
    assert set(options) == set(table.values) | set(table.switches)
    for flag, (keyword, _) in table.values.items():
        assert table.defaults[keyword] == options[flag].default, flag
        assert options[flag].name == keyword, flag
    for flag, keyword in table.switches.items():
        assert table.defaults[keyword] is False and options[flag].default is False, flag
    if table.arguments is None:
        assert [(a.name, a.required, a.nargs) for a in arguments] == [
            (keyword, True, 1) for keyword, _ in table.fixed
        ]
        for argument, (_, convert) in zip(arguments, table.fixed, strict=True):
            assert (convert is int) == (argument.type.name == "int"), argument.name
        return
    assert table.fixed == ()
    keyword, least, most, _ = table.arguments
    (argument,) = arguments
    assert argument.name == keyword and argument.required == (least > 0)
    assert argument.nargs == (-1 if most is None else most)


def test_the_fast_path_knows_exactly_semctls_own_options() -> None:
    """--home and --socket (the global options that take a value); --version is typer's."""
    group = typer.main.get_command(app)
    valued = {opt for param in group.params if not param.is_flag for opt in param.opts}
    assert valued == set(GLOBAL_OPTIONS)


def test_common_forms_parse() -> None:
    parsed = parse(["--home", "/h", "--socket=/s", "list", "--state=FAILED", "--limit", "5"])
    assert parsed is not None
    assert parsed.command == "list" and parsed.where == ("/h", "/s")
    assert parsed.options["state"] == "FAILED" and parsed.options["limit"] == 5
    assert parsed.options["queue"] is None and parsed.options["json_out"] is False
    parsed = parse(["wait", "3", "--timeout", "1.5", "4", "--json"])
    assert parsed is not None
    assert parsed.options == {"job_ids": [3, 4], "timeout": 1.5, "json_out": True}
    parsed = parse(["logs", "-n", "7", "12"])
    assert parsed is not None and parsed.options == {"job_id": 12, "lines": 7, "json_out": False}
    parsed = parse(["logs", "12", "--lines=7"])
    assert parsed is not None and parsed.options["lines"] == 7
    parsed = parse(["show", "0"])  # parsed: the command itself says ids start at 1
    assert parsed is not None and parsed.options["job_id"] == 0
    parsed = parse(["enqueue", "exec", "--", "true"])
    assert parsed is not None and parsed.rest == ["exec", "--", "true"]
    parsed = parse(["limit", "--create", "nightly", "2"])
    assert parsed is not None
    assert parsed.options == {"queue": "nightly", "n": 2, "create": True, "json_out": False}
    assert parse(["shutdown", "--now"]) == ("shutdown", (None, None), {"now": True}, ["--now"])
    assert parse(["status"]) == ("status", (None, None), {"json_out": False}, [])
    assert parse(["--help"]) == parse(["-h"]) == ("--help", (None, None), {}, [])
    parsed = parse(["--home", "/h", "schedule", "show", "--runs=3", "nightly", "--json"])
    assert parsed is not None and parsed.command == "schedule show"
    assert parsed.where == ("/h", None)
    assert parsed.options == {"name": "nightly", "runs": 3, "json_out": True}
    parsed = parse(["schedule", "show", "nightly"])
    assert parsed is not None and parsed.options == {
        "name": "nightly",
        "runs": 20,
        "json_out": False,
    }
    parsed = parse(["schedule", "list", "--json"])
    assert parsed == ("schedule list", (None, None), {"json_out": True}, ["--json"])
    assert parse(["tail"]) == ("tail", (None, None), {"job_id": None, "json_out": False}, [])
    parsed = parse(["tail", "--json", "12"])
    assert parsed is not None and parsed.options == {"job_id": 12, "json_out": True}
    parsed = parse(["top", "--json", "--once"])
    assert parsed is not None and parsed.options == {"once": True, "json_out": True}
    for verb in ("pause", "resume", "remove", "run"):
        parsed = parse(["schedule", verb, "nightly"])
        assert parsed is not None and parsed.command == f"schedule {verb}"
        assert parsed.options == {"name": "nightly", "json_out": False}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help", "status"],
        ["-h", "-h"],
        ["--version"],
        ["--home"],
        ["--home", "a", "--home", "b", "status"],
        ["--json", "status"],
        ["frobnicate"],
        ["limit", "q"],
        ["limit", "q", "1", "2"],
        ["limit", "q", "many"],
        ["limit", "q", "-1"],
        ["shutdown", "--now", "--now"],
        ["metrics", "extra"],
        ["maintenance", "--vacuum"],
        ["pause"],
        ["pause", "a", "b"],
        ["retry", "1", "--dependents", "--dependents"],
        ["status", "--help"],
        ["status", "extra"],
        ["status", "--json", "--json"],
        ["show"],
        ["show", "abc"],
        ["show", "-1"],
        ["show", "1", "2"],
        ["show", "1", "--", "2"],
        ["wait"],
        ["wait", "1", "--timeout", "soon"],
        ["logs", "1", "-n5"],
        ["logs", "1", "-n=5"],
        ["logs", "1", "-n", "5", "--lines", "6"],
        ["logs", "1", "-n", "-5"],
        ["list", "--limit"],
        ["list", "--limit", "many"],
        ["list", "--queue", "--json"],
        ["list", "-h"],
        ["list", "--bogus"],
        ["schedule"],
        ["schedule", "--help"],
        ["schedule", "list", "--help"],
        ["schedule", "add", "nightly", "--every", "1h", "NOOP"],
        ["schedule", "apply", "schedules.toml"],
        ["schedule", "frobnicate"],
        ["schedule", "list", "extra"],
        ["schedule", "show"],
        ["schedule", "show", "a", "b"],
        ["schedule", "show", "a", "--runs", "many"],
        ["schedule", "show", "a", "--runs", "-1"],
        ["schedule", "show", "a", "--runs", "1", "--runs", "2"],
        ["schedule", "pause", "-x"],
        ["schedule", "run", "a", "--json", "--json"],
        ["schedule list"],
        ["schedule", "remove list"],
        ["tail", "1", "2"],
        ["tail", "-1"],
        ["tail", "x"],
        ["tail", "--json", "--json"],
        ["tail", "--follow"],
        ["top", "1"],
        ["top", "--once", "--once"],
        ["top", "--interval", "2"],
    ],
)
def test_anything_else_goes_to_typer(args: list[str]) -> None:
    """Help, unknown or repeated options, bad numbers and odd shapes are the full CLI's."""
    assert parse(args) is None


def _imported(tmp_path: Path, argv: list[str]) -> str:
    """``semctl ARGV`` in a fresh interpreter with no supervisor: ``"EXIT [MODULES]"``."""
    unwanted = set(HEAVY + UNUSED_STDLIB)
    code = (
        "import sys\n"
        f"sys.argv = ['semctl', *{argv!r}]\n"
        "from semantica.control.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {unwanted!r})\n"
        "print(code, heavy)\n"
    )
    env = {"SEMANTICA_HOME": str(tmp_path / "nothing"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip(), out.stderr
    assert out.stderr.startswith("semctl: "), out.stderr  # one line: where it looked
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["list", "--json"],
        ["show", "1"],
        ["wait", "1", "2"],
        ["logs", "1", "-n", "3"],
        ["--home", "/nowhere", "status"],
        ["--socket", "/nowhere.sock", "enqueue", "NOOP"],
        ["queues"],
        ["cancel", "1", "2"],
        ["retry", "1", "--dependents"],
        ["pause", "--create", "nightly"],
        ["resume", "nightly", "--json"],
        ["limit", "nightly", "2", "--create"],
        ["metrics"],
        ["maintenance", "--force-vacuum", "--json"],
        ["shutdown", "--now"],
        ["tail", "1"],
        ["tail", "--json"],
        ["schedule", "list"],
        ["schedule", "list", "--json"],
        ["schedule", "show", "nightly", "--runs", "5"],
        ["schedule", "pause", "nightly"],
        ["schedule", "resume", "nightly", "--json"],
        ["schedule", "remove", "nightly"],
        ["schedule", "run", "nightly"],
    ],
)
def test_the_commands_people_type_import_no_typer(tmp_path: Path, argv: list[str]) -> None:
    """(They fail here for lack of a supervisor: exit 3, having imported none of these.)"""
    assert _imported(tmp_path, argv) == "3 []"


@pytest.mark.parametrize(("argv", "heavy"), [(["top", "--json"], "[]"), (["top"], "['rich']")])
def test_top_imports_no_typer_and_rich_only_to_draw(
    tmp_path: Path, argv: list[str], heavy: str
) -> None:
    """``top`` draws with rich (its live screen and tables), but never for ``--json``."""
    assert _imported(tmp_path, argv) == f"3 {heavy}"


def test_the_start_paths_named_tuples_hold_no_postponed_field_types() -> None:
    # typing.NamedTuple compiles a field type given as a string (into a ForwardRef): a
    # cost at every start.
    import typing

    from semantica.control import fast_path, plain

    for klass in (fast_path.Command, fast_path.Parsed, plain.Table):
        types = klass.__annotations__.values()
        assert not [kind for kind in types if isinstance(kind, str | typing.ForwardRef)], klass


def test_modules_semctl_loads_compile_no_pattern_few_commands_use() -> None:
    # A pattern compiled at import costs 0.1-0.3 ms of every semctl start: these
    # modules' patterns (connection strings, durations) wait for their first use.
    import re

    from semantica import config
    from semantica.control import schedule_input

    for module in (config, schedule_input):
        compiled = [name for name, value in vars(module).items() if isinstance(value, re.Pattern)]
        assert not compiled, module.__name__


@pytest.mark.parametrize("argv", [["status"], ["--help"]])
def test_semctl_ends_without_tearing_the_interpreter_down(tmp_path: Path, argv: list[str]) -> None:
    """Run as the program (here as ``python -m semantica.control``), a fast-path command
    flushes its output and ends the process at once: exit hooks, and the interpreter's
    slow teardown, do not run. (Called as a library, main() raises SystemExit: the
    tests above.)"""
    code = (
        "import atexit, runpy, sys\n"
        "atexit.register(print, 'torn down')\n"
        f"sys.argv = ['semctl', *{argv!r}]\n"
        "runpy.run_module('semantica.control', run_name='__main__', alter_sys=True)\n"
    )
    env = {"SEMANTICA_HOME": str(tmp_path / "nothing"), "PATH": "/usr/bin:/bin", "COLUMNS": "80"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "torn down" not in out.stdout
    if argv == ["status"]:
        assert (out.returncode, out.stdout) == (3, "")
        assert out.stderr.startswith("semctl: no supervisor at "), out.stderr
    else:
        assert out.returncode == 0
        assert out.stdout.startswith("Usage: python -m semantica.control "), out.stdout
