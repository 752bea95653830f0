"""Fixtures of the store conformance suite: every test runs once per backend.

Tests here name only the contract (:class:`JobStore`, :class:`StoreUpkeep`,
the records); the backends and how to open them are in ``backends.py``. Time
is a :class:`FakeClock` that moves only when a test advances it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from backends import BACKENDS, open_backend
from pgshared import drop_stores

from semantica.clock import FakeClock
from semantica.models import JobSpec
from semantica.supervisor.store import JobStore, StoreUpkeep


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test (session-scoped, so hypothesis tests may take it)."""
    name: str = request.param
    return name


@pytest.fixture(autouse=True)
def _drop_pg_stores() -> Iterator[None]:
    """The PostgreSQL schemas of a test's stores go with the test."""
    yield
    drop_stores()


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that moves only when a test advances it."""
    return FakeClock()


@pytest.fixture
def open_store(backend: str, tmp_path: Path, clock: FakeClock) -> Callable[[], JobStore]:
    """Open the test's store, the same one at every call: a restart (after a clean stop
    or a crash) is a ``close()`` and another call. The test closes what it opens."""

    def opened() -> JobStore:
        return open_backend(backend, tmp_path, clock)

    return opened


@pytest.fixture
def store(open_store: Callable[[], JobStore]) -> Iterator[JobStore]:
    """A new, empty store at the newest schema, closed after the test."""
    s = open_store()
    yield s
    s.close()


@pytest.fixture
def upkeep(store: JobStore) -> Iterator[StoreUpkeep]:
    """The maintenance handle of :func:`store` (used from the test's one thread)."""
    side = store.upkeep()
    yield side
    side.close()


@pytest.fixture
def spec() -> Callable[..., JobSpec]:
    """Build a JobSpec of type ``T`` unless told otherwise."""

    def make(type: str = "T", **fields: Any) -> JobSpec:
        return JobSpec(type=type, **fields)

    return make
