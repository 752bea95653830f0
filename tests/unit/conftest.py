"""Shared fixtures of the unit tests: a fake wall clock and an SQLite store on a temporary file.

(What every store backend must do is tested in ``tests/store/``, with fixtures of its own;
the store here is for what SQLite alone does, and for the supervisor's parts.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from semantica.clock import FakeClock
from semantica.models import JobSpec
from semantica.supervisor.store.sqlite import SQLiteStore


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that moves only when a test advances it."""
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the test's database file lives."""
    return tmp_path / "semantica.db"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[SQLiteStore]:
    """A freshly migrated SQLite store on a temporary file, closed after the test."""
    s = SQLiteStore(db_path, clock)
    yield s
    s.close()


@pytest.fixture
def spec() -> Callable[..., JobSpec]:
    """Build a JobSpec of type ``T`` unless told otherwise."""

    def make(type: str = "T", **fields: Any) -> JobSpec:
        return JobSpec(type=type, **fields)

    return make
