"""Fixtures: one boots the real supervisor (two workers) in a short temporary directory.

At the end the supervisor is stopped and the test fails if any process it
started (workers, exec commands) is left behind.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import Announcements, Daemon
from webkit import WebView


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (Unix socket paths are limited to ~104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sem-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _stop_and_check(d: Daemon) -> None:
    """Stop ``d`` if it runs, and fail if any process it ever started is still alive."""
    alive = d.stop_for_good()
    assert not alive, f"processes left behind: {alive}"


@pytest.fixture
def make_daemon(short_tmp: Path) -> Iterator[Callable[..., Daemon]]:
    """Start a supervisor with given flags and environment: ``make_daemon("--workers", "1")``.

    Every supervisor made is stopped at the end, and none may leave a process behind.
    """
    made: list[Daemon] = []

    def make(*args: str, **env: str) -> Daemon:
        d = Daemon(home=short_tmp / f"home{len(made) or ''}")
        made.append(d)
        d.start(*args, **env)
        return d

    yield make
    # Every supervisor is stopped before any failure is raised: one left running would
    # outlive this test and disturb the next.
    failures = []
    for d in made:
        try:
            _stop_and_check(d)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "; ".join(failures)


@pytest.fixture
def daemon(make_daemon: Callable[..., Daemon]) -> Daemon:
    """A running supervisor with two workers; stopped afterwards, leaving no process behind."""
    return make_daemon()


@pytest.fixture
def announcements(short_tmp: Path) -> Iterator[Announcements]:
    a = Announcements(short_tmp / "announce.sock")
    yield a
    a.close()


@pytest.fixture
def web(daemon: Daemon) -> Iterator[WebView]:
    """``semctl web`` for the supervisor of ``daemon``; stopped (SIGTERM, exit 0) afterwards."""
    view = WebView(daemon)
    view.start()
    yield view
    assert view.stop() == 0, view.stderr()
