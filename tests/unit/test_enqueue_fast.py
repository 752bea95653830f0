"""semctl enqueue's fast path parses like the typer command, and hands the rest to typer;
semctl's start-up (either path) imports nothing it does not need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from semantica.control.cli import app
from semantica.control.enqueue_cmd import (
    DEFAULTS,
    LIST_OPTIONS,
    SWITCHES,
    VALUE_OPTIONS,
    job_ids,
    parse_fast,
)
from semantica.errors import BadInput


def _typer_enqueue_options() -> dict[str, object]:
    command = typer.main.get_command(app).commands["enqueue"]  # type: ignore[attr-defined]
    options = {}
    for param in command.params:
        for opt in param.opts:
            if opt.startswith("--"):
                options[opt] = param.default
    return options


def test_the_fast_path_knows_exactly_the_typer_commands_options() -> None:
    """Every option of `semctl enqueue` is in the fast path's tables, and nothing else."""
    typer_options = _typer_enqueue_options()
    assert set(typer_options) == set(VALUE_OPTIONS) | set(SWITCHES) | set(LIST_OPTIONS)


def test_the_fast_paths_defaults_are_the_typer_commands() -> None:
    """An option left out means the same on both paths."""
    typer_options = _typer_enqueue_options()
    for flag, (keyword, _) in VALUE_OPTIONS.items():
        assert DEFAULTS[keyword] == typer_options[flag], flag
    for flag, keyword in SWITCHES.items():
        assert DEFAULTS[keyword] is False and not typer_options[flag], flag
    for flag, keyword in LIST_OPTIONS.items():
        assert DEFAULTS[keyword] is None and not typer_options[flag], flag


def test_common_forms_parse() -> None:
    """Options before and after the type, --opt=value, switches and -- ARGV."""
    parsed = parse_fast(
        ["--queue", "q", "exec", "--priority=5", "--require-idle", "--", "make", "-j2"]
    )
    assert parsed is not None
    type_, argv, options = parsed
    assert (type_, argv) == ("exec", ["make", "-j2"])
    assert options["queue"] == "q" and options["priority"] == 5 and options["require_idle"]
    assert options["payload_file"] is None
    parsed = parse_fast(["exec", "--env", "A=1", "--env=B=2=3", "--no-env", "--", "env"])
    assert parsed is not None
    assert parsed[2]["env"] == ["A=1", "B=2=3"] and parsed[2]["no_env"] is True
    parsed = parse_fast(["INDEX", "--payload-file", "p.json", "--delay", "1.5", "--json"])
    assert parsed is not None
    assert parsed[2]["payload_file"] == Path("p.json") and parsed[2]["delay"] == 1.5
    assert parsed[2]["json_out"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["INDEX", "--help"],
        [],
        ["INDEX", "extra"],
        ["INDEX", "--priority", "high"],
        ["INDEX", "--no-require-idle"],
        ["INDEX", "--queue"],
        ["INDEX", "--queue", "a", "--queue", "b"],
        ["INDEX", "--bogus"],
    ],
)
def test_anything_else_goes_to_typer(args: list[str]) -> None:
    """Help, unknown options, bad numbers and odd shapes are left to the full CLI."""
    assert parse_fast(args) is None


@pytest.mark.parametrize("flag", ["--after", "--after-end"])
@pytest.mark.parametrize("bad", ["\u00b2", "x", "1.5", "", "3\u00b9"])
def test_a_job_id_that_is_no_number_is_named_in_one_line(flag: str, bad: str) -> None:
    """Even a character str.isdigit() calls a digit but int() refuses (a superscript
    two) is bad input naming the flag and the value, not a traceback."""
    with pytest.raises(BadInput) as info:
        job_ids(flag, ["7", bad])
    assert info.value.message == f"{flag} takes a job id, got {bad!r}"
    assert job_ids(flag, ["7", " 8 "]) == [7, 8]


def test_a_superscript_after_is_exit_2_with_one_line(tmp_path: Path) -> None:
    """The whole command, on the fast path: one line on stderr, exit status 2."""
    env = {"SEMANTICA_HOME": str(tmp_path / "nothing"), "PATH": "/usr/bin:/bin"}
    code = "from semantica.control.entry import main\nmain()\n"
    argv = ["--after", "\u00b2", "exec", "--", "true"]
    out = subprocess.run(
        [sys.executable, "-c", code, "enqueue", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr == "semctl: --after takes a job id, got '\u00b2'\n"


#: What only some commands need, and semctl's start-up must not pay for: the cron
#: library, the TOML reader, the time zone database (schedules).
SCHEDULE_ONLY = ("cronsim", "tomllib", "zoneinfo")


def _imported(tmp_path: Path, argv: list[str], modules: tuple[str, ...]) -> str:
    """``semctl ARGV`` run in a fresh interpreter with no supervisor: ``"EXIT [MODULES]"``,
    the exit status and which of ``modules`` (top-level names) it imported."""
    code = (
        "import sys\n"
        f"sys.argv = ['semctl', *{argv!r}]\n"
        "from semantica.control.entry import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(modules)!r})\n"
        "print(code, heavy)\n"
    )
    env = {"SEMANTICA_HOME": str(tmp_path / "nothing"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip(), out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_enqueue_imports_neither_typer_nor_rich_nor_trio_nor_structlog(tmp_path: Path) -> None:
    """The fast path's imports stay light (it fails here for lack of a supervisor)."""
    heavy = ("typer", "rich", "trio", "structlog", "click", "psutil", *SCHEDULE_ONLY)
    heavy += ("socket", "selectors")  # see test_fast_path.py
    assert _imported(tmp_path, ["enqueue", "NOOP"], heavy) == "3 []"


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--help"], 0),
        (["status"], 3),
        (["list"], 3),
        (["show", "1"], 3),
        (["top", "--once"], 3),
        (["schedule", "--help"], 0),
        (["schedule", "add", "--help"], 0),
        (["schedule", "apply", "--help"], 0),
        (["schedule", "list"], 3),
        (["schedule", "show", "nightly"], 3),
        (["schedule", "run", "nightly"], 3),
    ],
)
def test_semctls_start_up_imports_no_cron_toml_or_zone_library(
    tmp_path: Path, argv: list[str], status: int
) -> None:
    """The full CLI registers the schedule commands on every run, but imports cronsim,
    tomllib and zoneinfo only in the commands that read an expression, a file or a
    zone: not at start-up, nor in help, nor in a command that fails to connect."""
    assert _imported(tmp_path, argv, SCHEDULE_ONLY) == f"{status} []"
