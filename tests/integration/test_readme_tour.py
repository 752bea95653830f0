"""The README's five-minute tour, run as written: its commands print what it shows.

The tour is read from README.md itself: the handler module is written to a
directory of its own, the supervisor is started as the tour says to start it
from a clone (``make run ARGS="--handlers myhandlers"``), and each ``$ command``
is run by a shell from that directory, with the venv's ``bin`` first on the
PATH (as ``. .venv/bin/activate`` leaves it), its output compared with the
lines the README shows under it (``...`` stands for any lines). The Python
snippet is saved as ``tour.py`` and run, and its output compared too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import BIN, START_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]


def _tour() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## A five-minute tour")
    return readme[start : readme.index("\n## ", start + 1)]


def _blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block: (language, body)."""
    return [(m[1], m[2]) for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.DOTALL)]


def _sessions(text: str) -> list[tuple[str, list[str]]]:
    """Each ``$ command`` of the sh blocks, with the output lines shown under it."""
    found: list[tuple[str, list[str]]] = []
    for language, body in _blocks(text):
        if language != "sh":
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found and body.lstrip().startswith("$ "):
                found[-1][1].append(line)
    return found


def _matches(shown: list[str], got: list[str]) -> bool:
    """Whether ``got`` is what ``shown`` shows: equal lines, ``...`` for any run of lines."""
    if not shown:
        return not got
    if shown[0] == "...":
        return any(_matches(shown[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and got[0].rstrip() == shown[0].rstrip() and _matches(shown[1:], got[1:])


@pytest.fixture
def tour_dir(short_tmp: Path) -> Path:
    """The user's directory: the tour's handler module in it."""
    [module] = [body for lang, body in _blocks(_tour()) if lang == "python" and "@handler(" in body]
    (short_tmp / "myhandlers.py").write_text(module)
    return short_tmp


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tour_dir: Path) -> dict[str, str]:
    """A fresh state directory; the venv's bin first on the PATH. The tour runs twice:
    on the default store, and with SEMANTICA_STORE naming a fresh PostgreSQL database
    (it must work unchanged there)."""
    env = dict(os.environ)
    env.pop("SEMANTICA_STORE", None)
    if request.param == "postgresql":
        env["SEMANTICA_STORE"] = request.getfixturevalue("pg_database")
    env.pop("NOTIFY_SOCKET", None)
    env.pop("PYTHONPATH", None)
    env["SEMANTICA_HOME"] = str(tour_dir / "home")
    env["SEMANTICA_WORKERS"] = "2"
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


@pytest.fixture
def supervisor(tour_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """`make run ARGS="--handlers myhandlers"`, as the tour says, with the handler module
    on PYTHONPATH (in a clone it sits in the clone's directory, which `make run` adds)."""
    assert 'make run ARGS="--handlers myhandlers"' in _tour()
    notify_path = tour_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(START_TIMEOUT)
    run_env = env | {"PYTHONPATH": str(tour_dir), "NOTIFY_SOCKET": str(notify_path)}
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(ROOT), "run", "ARGS=--handlers myhandlers"],
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the group: make, the shell, semanticad
    )
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        yield
    finally:
        notify.close()
        os.killpg(make.pid, signal.SIGTERM)  # the supervisor drains (the tour's jobs are done)
        try:
            make.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()


def test_the_tour_prints_what_the_readme_shows(
    supervisor: None, tour_dir: Path, env: dict[str, str]
) -> None:
    """Steps 2 to 5, command by command, from a fresh state directory."""
    tour = _tour()
    assert ". .venv/bin/activate" in tour  # how semctl gets on the PATH from a clone
    sessions = _sessions(tour)
    assert len(sessions) >= 6
    for command, shown in sessions:
        if "| jq" in command and shutil.which("jq") is None:
            continue  # the README says jq is a tool of its own
        run = subprocess.run(
            ["sh", "-c", command], cwd=tour_dir, env=env, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, (command, run.stderr)
        assert _matches(shown, run.stdout.splitlines()), (command, shown, run.stdout)
    snippet, output = _python_snippet(tour)
    (tour_dir / "tour.py").write_text(snippet)
    run = subprocess.run(
        [sys.executable, "tour.py"], cwd=tour_dir, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == output
    watch = next(body for language, body in _blocks(tour) if "semctl status" in body)
    for line in watch.splitlines():
        command = line.split("#")[0].strip()
        if command:
            run = subprocess.run(["sh", "-c", command], cwd=tour_dir, env=env, capture_output=True)
            assert run.returncode == 0, (command, run.stderr)


def _python_snippet(tour: str) -> tuple[str, list[str]]:
    """The "From Python" snippet and the output block shown after it."""
    blocks = _blocks(tour)
    at = next(i for i, (language, body) in enumerate(blocks) if "Client()" in body)
    assert blocks[at][0] == "python" and blocks[at + 1][0] == ""
    return blocks[at][1], blocks[at + 1][1].splitlines()
