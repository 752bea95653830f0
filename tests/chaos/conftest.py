"""Fixtures of the chaos suite: real supervisors running ``chaos_handlers``, and the summaries.

The harness of the integration tests is reused (``harness.Daemon``) from its
directory, put on ``sys.path`` here (the test directories are not packages).
Every supervisor a test makes is stopped at the end, and the test fails if any
process it started is left behind.

Each scenario reports one line (what it did and its counts); the lines are
printed (seen with ``-s``) and repeated in a "chaos scenarios" section at the
end of the run, which ``make chaos`` shows.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

from conftest_summary import CHAOS_SUMMARY  # noqa: E402
from harness import Daemon  # noqa: E402
from invariants import processes_of  # noqa: E402


class ChaosDaemon(Daemon):
    """A harness Daemon whose workers load ``chaos_handlers`` (from this directory)."""

    def env(self, **extra: str) -> dict[str, str]:
        env = super().env(**extra)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
        return env

    def start(self, *args: str, **env: str) -> None:
        if args or self.starts == 0:
            args = ("--handlers", "chaos_handlers", *args)
        super().start(*args, **env)


def _tmp_base() -> str:
    """A RAM-backed directory if there is one: the suite measures crashes, not fsync.

    (Process crashes keep what was committed on any file system; fsync only
    matters for power loss, which no scenario simulates.)
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return str(shm)
    return "/tmp"


@pytest.fixture
def chaos_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (for the Unix sockets)."""
    path = Path(tempfile.mkdtemp(prefix="chaos-", dir=_tmp_base()))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def stop_and_check(d: Daemon) -> None:
    """Stop ``d`` if it runs; fail if any process it ever started, or any process
    naming its state directory, is still alive."""
    alive = d.stop_for_good()
    alive += [p for p in processes_of(d.home) if p not in alive]
    for p in alive:
        p.kill()
    assert not alive, f"processes left behind: {alive}"


@pytest.fixture
def make_daemon(chaos_tmp: Path) -> Iterator[Callable[..., ChaosDaemon]]:
    """Start a supervisor: ``make_daemon("--drain-timeout", "2", workers=4)``; ``stderr``: a
    descriptor for its stderr (a pipe, say) instead of its log file."""
    made: list[ChaosDaemon] = []

    def make(
        *args: str,
        workers: int = 2,
        home: Path | None = None,
        stderr: int | None = None,
        **env: str,
    ) -> ChaosDaemon:
        d = ChaosDaemon(
            home=home or chaos_tmp / f"home{len(made) or ''}", workers=workers, stderr=stderr
        )
        made.append(d)
        d.start(*args, **env)
        return d

    yield make
    # Every supervisor is stopped before any failure is raised: one left running would
    # outlive this test and disturb the next.
    failures = []
    for d in made:
        try:
            stop_and_check(d)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "; ".join(failures)


@pytest.fixture
def ledger_path(chaos_tmp: Path) -> Path:
    return chaos_tmp / "ledger"


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Report a scenario's one-line summary: printed now, and repeated at the end of the run.

    The line travels as a property of the test's report, so that the run's end has it
    also when tests run in worker processes (pytest-xdist), not in this one."""

    def emit(line: str) -> None:
        print(line)
        request.node.user_properties.append((CHAOS_SUMMARY, line))

    return emit
