"""`semctl --help` printed from help_text.py is exactly typer's, wherever it is printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from semantica.control.help_text import TOP

#: Run as semctl: typer's path alone (cli.main) or the whole entry point (entry.main);
#: the last line on stderr says whether it imported typer.
CODE = (
    "import sys\n"
    "sys.argv = ['semctl', *sys.argv[1:]]\n"
    "from semantica.control.{module} import main\n"
    "try:\n"
    "    code = main()\n"
    "finally:\n"
    "    sys.stderr.write(repr(sorted({{'typer'}} & set(sys.modules))))\n"
    "sys.exit(code)\n"
)
TYPER = CODE.format(module="cli")
FAST = CODE.format(module="entry")


def _run(code: str, *args: str, columns: str | None = None) -> tuple[str, list[str]]:
    """stdout of ``code`` run as semctl with ``args`` (into a pipe), and whether it
    imported typer: ``(stdout, [typer])`` or ``(stdout, [])``."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = columns
    run = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return run.stdout, eval(run.stderr.strip().splitlines()[-1])


def test_the_kept_help_is_typers() -> None:
    """If this fails, a command or its first docstring line changed: paste the text
    below into TOP in semantica/control/help_text.py."""
    typer_help, _ = _run(TYPER, "--help", columns="80")
    assert typer_help == TOP, f"typer now prints:\n{typer_help}"


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("columns", [None, "80", "200"])
def test_semctl_help_at_80_columns_or_more_needs_no_typer(flag: str, columns: str | None) -> None:
    """(Into a pipe, with no COLUMNS, click lays help out at 80 columns.)"""
    assert _run(FAST, flag, columns=columns) == (TOP, [])


@pytest.mark.parametrize("args", [["--help"], ["status", "--help"], ["schedule", "--help"]])
def test_narrower_or_other_help_is_typers_own(args: list[str]) -> None:
    fast, imported = _run(FAST, *args, columns="60")
    assert imported == ["typer"]
    assert fast == _run(TYPER, *args, columns="60")[0]


def test_python_m_semantica_control_help_is_typers() -> None:
    """`python -m semantica.control --help`: click's name for the program, without typer."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    fast = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "semantica.control", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fast.returncode == 0, fast.stderr
    assert " typer" not in fast.stderr
    as_typer = (
        "import sys\n"
        "import semantica.control.cli as cli\n"
        "sys.modules['__main__'].__package__ = 'semantica.control'\n"
        "sys.argv = [cli.__file__.replace('cli.py', '__main__.py'), '--help']\n"
        "sys.exit(cli.main())\n"
    )
    typer = subprocess.run(
        [sys.executable, "-c", as_typer], env=env, capture_output=True, text=True, timeout=60
    )
    assert typer.returncode == 0, typer.stderr
    assert typer.stdout.startswith("Usage: python -m semantica.control [OPTIONS]")
    assert fast.stdout == typer.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_into_a_closed_pipe_is_quiet_as_typers(flag: str) -> None:
    """``semctl --help | true``: exit 1 and nothing on stderr, as click does on EPIPE."""
    outcomes = []
    for code in (TYPER, FAST):
        read, write = os.pipe()
        os.close(read)
        try:
            run = subprocess.run(
                [sys.executable, "-c", code, flag],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
            )
        finally:
            os.close(write)
        # (The last line on stderr is the probe's: whether typer was imported.)
        outcomes.append((run.returncode, run.stderr.strip().splitlines()[:-1]))
    assert outcomes[1] == outcomes[0] == (1, [])
