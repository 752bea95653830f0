"""Fixtures of the browser tests: a real supervisor, a real ``semctl web`` for it, and a
headless Chromium per test.

The supervisor and the web view are the integration tests' (``harness.Daemon``: two
workers running ``semtest_handlers``; ``webkit.WebView``: ``semctl web --addr
127.0.0.1:0``), imported from tests/integration, which is put on ``sys.path`` here as
the chaos suite does (the test directories are not packages). Each test has its own
short temporary directory (the supervisor's home, the web view's stderr, the
browser's profile) and the view binds a free port: tests run side by side under
pytest-xdist.

When a test fails, its report carries the web view's stderr, the end of the
supervisor's log and what each browser saw (its address, console and dialogs).
Every process started here is stopped at the end: the browsers, ``semctl web``
(SIGTERM; it must exit 0) and the supervisor (the test fails if it leaves one behind).
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

from browserkit import Browser  # noqa: E402
from harness import Daemon  # noqa: E402
from webkit import WebView  # noqa: E402


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory with a short path (Unix socket paths are limited to ~104 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sem-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# What a failed test's report shows: (heading, how to get the text), per test.
_SHOW = pytest.StashKey[list[tuple[str, Callable[[], str]]]]()


def _show(request: pytest.FixtureRequest, heading: str, text: Callable[[], str]) -> None:
    request.node.stash.setdefault(_SHOW, []).append((heading, text))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "workers(n): the test's supervisor runs n workers (two unless told)"
    )


@pytest.fixture
def daemon(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[Daemon]:
    """A running supervisor with two workers (or as many as the test's ``workers`` mark
    says); stopped afterwards, leaving no process behind."""
    mark = request.node.get_closest_marker("workers")
    d = Daemon(home=short_tmp / "home", workers=mark.args[0] if mark else 2)
    _show(request, "supervisor log (last 40 lines)", lambda: "\n".join(d.log().splitlines()[-40:]))
    try:
        d.start()
        yield d
    finally:
        alive = d.stop_for_good()
        assert not alive, f"processes left behind: {alive}"


@pytest.fixture
def web(request: pytest.FixtureRequest, daemon: Daemon) -> Iterator[WebView]:
    """``semctl web`` for the test's supervisor on a free loopback port; at the end it
    must stop cleanly on SIGTERM (exit 0), live pages and all."""
    view = WebView(daemon)
    _show(request, "semctl web stderr", view.stderr)
    view.start()
    yield view
    assert view.stop() == 0, f"semctl web did not exit 0 on SIGTERM:\n{view.stderr()}"


@pytest.fixture
def make_browser(
    request: pytest.FixtureRequest, short_tmp: Path
) -> Iterator[Callable[..., Browser]]:
    """Start another headless Chromium, with a profile (cookies, storage) of its own and
    more command-line flags if given: ``make_browser("--lang=de")``."""
    made: list[Browser] = []
    numbers = itertools.count(1)

    def make(*flags: str) -> Browser:
        n = next(numbers)
        b = Browser(short_tmp / f"browser{n}", *flags)
        made.append(b)
        _show(request, f"browser {n}", b.report)
        return b

    yield make
    for b in made:
        b.quit()


@pytest.fixture
def browser(make_browser: Callable[..., Browser]) -> Browser:
    """A fresh headless Chromium (no session), quit at the end."""
    return make_browser()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report shows what the web view, the supervisor and the browsers said."""
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for heading, text in item.stash.get(_SHOW, []):
            report.sections.append((heading, text()))
    return report
