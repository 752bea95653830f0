"""The committer: group commit, and a lone writer that commits on its own turn."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from semantica.errors import StoreFull
from semantica.supervisor.committer import Committer


class FakeStore:
    """What the committer uses of a store: a write tells it, a commit counts."""

    def __init__(self) -> None:
        self.on_write: Callable[[], None] | None = None
        self.commits = 0
        self.fail: StoreFull | None = None

    def defer_commits(self, on_write: Callable[[], None]) -> None:
        self.on_write = on_write

    def write(self) -> None:
        assert self.on_write is not None
        self.on_write()

    def commit(self) -> None:
        self.commits += 1
        if self.fail is not None:
            raise self.fail


def _committer() -> tuple[Committer, FakeStore]:
    store = FakeStore()
    return Committer(store), store  # type: ignore[arg-type]


async def test_a_lone_write_is_committed_by_its_writer_at_once() -> None:
    """No other task can run: the writer commits now, and the committer's task,
    woken by the write, finds nothing left (one commit in all)."""
    committer, store = _committer()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        store.write()
        ticket = committer.ticket()
        assert ticket is not None
        assert committer.commit_if_alone()
        assert ticket.settled and ticket.error is None
        assert store.commits == 1
        await trio.testing.wait_all_tasks_blocked()
        assert store.commits == 1
        assert committer.ticket() is None
        nursery.cancel_scope.cancel()


async def test_a_write_with_other_tasks_runnable_waits_for_the_batch() -> None:
    """Another task could still write: the batch is left to the committer, which
    commits both writes in one commit once nothing else can run."""
    committer, store = _committer()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(trio.lowlevel.checkpoint)  # some task, runnable now
        store.write()
        ticket = committer.ticket()
        assert ticket is not None
        assert not committer.commit_if_alone()
        assert not ticket.settled and store.commits == 0

        async def another_write() -> None:
            store.write()

        nursery.start_soon(another_write)  # ...and one that writes meanwhile
        assert await ticket.wait() is None
        assert store.commits == 1
        assert committer.ticket() is None
        nursery.cancel_scope.cancel()


async def test_nothing_written_is_settled_at_once() -> None:
    committer, store = _committer()
    assert committer.commit_if_alone()
    assert store.commits == 0


async def test_a_failed_lone_commit_reaches_its_writers() -> None:
    committer, store = _committer()
    store.fail = StoreFull("the disk is full")
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        store.write()
        ticket = committer.ticket()
        assert ticket is not None
        assert committer.commit_if_alone()
        assert ticket.settled and ticket.error is store.fail
        nursery.cancel_scope.cancel()


async def test_when_settled_calls_back_after_the_commit_and_keeps_the_writer_alone() -> None:
    """A callback, unlike a task waiting in durable(), is not runnable: the writer still
    commits alone at once, and the callback hears of it in that step."""
    committer, store = _committer()
    heard: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        store.write()
        committer.when_settled(heard.append)
        assert heard == []
        assert committer.commit_if_alone()
        assert heard == [None] and store.commits == 1
        nursery.cancel_scope.cancel()


def test_when_settled_with_nothing_pending_calls_back_at_once() -> None:
    committer, _ = _committer()
    heard: list[object] = []
    committer.when_settled(heard.append)
    assert heard == [None]


async def test_when_settled_hears_a_failed_commit() -> None:
    """The batch's commit fails: the callback gets its error (the writes are undone)."""
    committer, store = _committer()
    store.fail = StoreFull("the disk is full")
    heard: list[object] = []
    store.write()
    committer.when_settled(heard.append)
    committer.commit_now()
    assert heard == [store.fail]
    store.fail = None
    store.write()  # the next batch's callbacks are its own
    committer.commit_now()
    assert len(heard) == 1
