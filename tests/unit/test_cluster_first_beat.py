"""A node renews its heartbeat as soon as it runs (supervisor/cluster.py).

The fence counts from the join. A node whose start took a while between its
join and its beat loop (starting its workers on a busy machine) must not wait
another beat interval before it first renews: it would then find half the
node timeout gone without a heartbeat and kill the jobs it had just started,
though the database was reachable all along.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from semantica.config import Settings
from semantica.errors import StoreBusy, StoreUnavailable
from semantica.supervisor.cluster import Node
from semantica.supervisor.events import JobEvents

TIMEOUT = 2.0


class Feed:
    def wait(self, timeout: float) -> set[str]:
        return set()

    def close(self) -> None:
        pass


class Store:
    """The node methods of a shared store, every call noted with its (trio) time."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def join(self, spec: Any) -> int:
        self.calls.append(("join", trio.current_time()))
        return 1

    def changes(self) -> Feed:
        return Feed()

    def heartbeat(self, detail: bytes) -> bool:
        self.calls.append(("heartbeat", trio.current_time()))
        return True

    def reap_dead(self, timeout: float) -> list[int]:
        return []

    def stop_requests(self) -> list[Any]:
        return []


def test_a_node_slow_to_start_beats_at_once_and_does_not_fence(tmp_path: Path) -> None:
    store = Store()
    fenced: list[str] = []

    def fence(reason: str) -> int:
        fenced.append(reason)
        return 1

    async def stop_local(job_id: int, kind: str, message: str) -> bool:
        return False

    async def main() -> None:
        settings = Settings.from_env(
            {"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_NODE_TIMEOUT": str(TIMEOUT)}
        )
        node = Node(
            store,  # type: ignore[arg-type]
            settings,
            workers=list,
            fence=fence,
            wake=lambda: None,
            events=JobEvents(),
            stop_local=stop_local,
        )
        node.join()
        await trio.sleep(0.4 * TIMEOUT)  # the workers start: less than half the timeout
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(TIMEOUT)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    beats = [at for what, at in store.calls if what == "heartbeat"]
    assert beats[0] <= 0.4 * TIMEOUT + 0.01, beats
    assert not fenced


class FlakyStore(Store):
    """A store whose database is away from ``down`` to ``up`` (trio time)."""

    def __init__(self, down: float, up: float) -> None:
        super().__init__()
        self.down, self.up = down, up

    def heartbeat(self, detail: bytes) -> bool:
        if self.down <= trio.current_time() < self.up:
            raise StoreUnavailable("the database is away")
        return super().heartbeat(detail)

    def reap_dead(self, timeout: float) -> list[int]:
        self.calls.append(("reap", trio.current_time()))
        return []


def test_a_node_back_from_an_outage_waits_a_node_timeout_before_declaring_others_dead(
    tmp_path: Path,
) -> None:
    """After the database was away, the first node back must not declare the others dead
    before they had a node timeout to beat again; before the outage it reaps as usual."""
    store = FlakyStore(down=1.0, up=4.0)

    async def stop_local(job_id: int, kind: str, message: str) -> bool:
        return False

    async def main() -> None:
        settings = Settings.from_env(
            {"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_NODE_TIMEOUT": str(TIMEOUT)}
        )
        node = Node(
            store,  # type: ignore[arg-type]
            settings,
            workers=list,
            fence=lambda reason: 0,
            wake=lambda: None,
            events=JobEvents(),
            stop_local=stop_local,
        )
        node.join()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(10)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    reaps = [at for what, at in store.calls if what == "reap"]
    assert reaps[0] < 1.0  # from the start
    after = [at for at in reaps if at >= 1.0]
    assert after and min(after) >= 4.0 + TIMEOUT - 0.01, after  # T after it was back


class BusyReapStore(Store):
    """Heartbeats get through; looking for the dead finds their rows locked (a node
    frozen inside a transaction) every time."""

    def reap_dead(self, timeout: float) -> list[int]:
        self.calls.append(("reap", trio.current_time()))
        raise StoreBusy("rows locked by a frozen node")


def test_a_reap_that_fails_is_not_a_failed_heartbeat(tmp_path: Path) -> None:
    """A healthy node whose reaps fail (busy) keeps its jobs: its heartbeats got through."""
    store = BusyReapStore()
    fenced: list[str] = []

    async def stop_local(job_id: int, kind: str, message: str) -> bool:
        return False

    async def main() -> None:
        settings = Settings.from_env(
            {"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_NODE_TIMEOUT": str(TIMEOUT)}
        )
        node = Node(
            store,  # type: ignore[arg-type]
            settings,
            workers=list,
            fence=lambda reason: fenced.append(reason) or 1,
            wake=lambda: None,
            events=JobEvents(),
            stop_local=stop_local,
        )
        node.join()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(3 * TIMEOUT)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len([c for c in store.calls if c[0] == "reap"]) > 5  # it kept trying
    assert fenced == []
