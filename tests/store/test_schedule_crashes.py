"""A slot is claimed once through crashes and concurrent nodes: a process SIGKILLed inside
the fire's write (before its commit) or just after it, then a store reopened, gives
exactly one job for the slot; on PostgreSQL, three stores firing at once over many
slots give one job per slot (every backend, the last PostgreSQL only)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pgshared import database_for

from semantica.clock import FakeClock
from semantica.models import JobSpec
from semantica.schedules import ScheduleSpec
from semantica.supervisor.store import JobStore, open_store

T0 = 1_800_000_000.0
SPEC = ScheduleSpec(name="tick", job=JobSpec(type="T"), every=60.0, overlap="allow")

# The child: opens the store at a clock a slot on, and fires; killed where it is told.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from semantica.clock import FakeClock
    from semantica.supervisor.store import open_store

    location, when, kill_at = sys.argv[1], sys.argv[2], sys.argv[3]
    if location.endswith(".db"):
        from pathlib import Path
        location = Path(location)
    store = open_store(location, FakeClock(float(when)), migrate=True)
    store.defer_commits(lambda: None)  # as the supervisor does: a batch, then a commit
    real_insert = store.insert

    def insert(prepared):
        result = real_insert(prepared)
        if kill_at == "inside":  # the job and the claim are written, not committed
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    store.insert = insert
    fired = store.fire_due()
    assert fired.fired == 1, fired
    store.commit()
    if kill_at == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _location(backend: str, place: Path) -> str:
    return str(place / "semantica.db") if backend == "sqlite" else database_for(place)


def _slots(store: JobStore) -> list[float | None]:
    jobs = [job for job in store.list(limit=10_000) if job.schedule == "tick"]
    return sorted(None if job.slot is None else job.slot.timestamp() for job in jobs)


@pytest.mark.parametrize("kill_at", ["inside", "after"])
def test_a_kill_at_the_fire_gives_one_job_for_the_slot(
    backend: str, tmp_path: Path, open_store: Callable[[], JobStore], clock: FakeClock, kill_at: str
) -> None:
    """SIGKILL inside the fire's write (its claim and job not committed) or just after its
    commit; a store reopened then fires: one job for the slot, either way."""
    clock.now = T0
    first = open_store()
    first.put_schedule(SPEC)
    first.close()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, _location(backend, tmp_path), str(T0 + 60.5), kill_at],
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    clock.now = T0 + 61
    again = open_store()
    try:
        fired = again.fire_due()
        assert fired.fired == (1 if kill_at == "inside" else 0)
        assert _slots(again) == [T0 + 60]
        assert again.schedule("tick").fired == 1
    finally:
        again.close()


def test_three_nodes_firing_at_once_make_one_job_per_slot(backend: str, tmp_path: Path) -> None:
    """Three stores on one PostgreSQL database, each firing in its own thread as fast as
    it can while the clock moves over 40 slots: never two jobs for a slot, and every
    slot decided once."""
    if backend != "postgresql":
        pytest.skip("one writer on SQLite: several stores are PostgreSQL's")
    clock = FakeClock(T0)
    location = database_for(tmp_path)
    stores = [open_store(location, clock, migrate=True) for _ in range(3)]
    try:
        stores[0].put_schedule(SPEC)
        slots = 40
        fired = [0, 0, 0]
        done = threading.Event()
        errors: list[BaseException] = []

        def fire(n: int) -> None:
            try:
                while not done.is_set():
                    fired[n] += stores[n].fire_due().fired
            except BaseException as exc:  # noqa: BLE001 (any failure is reported by the test)
                errors.append(exc)

        threads = [threading.Thread(target=fire, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(slots):
            clock.advance(60)  # each slot comes due while all three fire
            done.wait(0.05)
        clock.advance(1)
        done.wait(0.2)
        done.set()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors
        made = _slots(stores[0])
        assert len(made) == len(set(made)) == sum(fired)  # never two jobs for a slot
        schedule = stores[1].schedule("tick")
        # Every slot decided once: fired, or missed if the threads fell a slot behind.
        assert schedule.fired + schedule.missed == slots and schedule.fired == len(made)
        assert len(made) >= slots // 2
    finally:
        for store in stores:
            store.close()
