"""The committer: group commit, and a lone writer that commits on its own turn."""

from __future__ import annotations

import threading
from collections.abc import Callable

import trio
import trio.testing

from semantica.errors import StoreError, StoreFull
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

    def commit_in_thread(self, done: Callable[[StoreError | None], None]) -> None:
        try:
            self.commit()
        except StoreError as exc:
            done(exc)
        else:
            done(None)


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


async def test_a_write_while_another_client_is_sending_is_left_to_the_batch() -> None:
    """Being alone counts the clients heard, at every site that may commit: with another
    client's request read just now (its next one is likely on its way), a writer does
    not commit alone, even with no other task runnable; the committer commits both
    clients' writes at once. A client heard alone still commits at once."""
    committer, store = _committer()
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        committer.heard("a")
        store.write()
        assert committer.commit_if_alone("a")  # only this client: at once
        assert store.commits == 1
        committer.heard("b")
        committer.heard("a")
        store.write()
        ticket = committer.ticket()
        assert ticket is not None
        assert not committer.commit_if_alone("a")  # "b" was heard just now
        assert not committer.commit_if_alone("b")
        store.write()  # b's write joins the batch
        assert await ticket.wait() is None
        assert store.commits == 2
        nursery.cancel_scope.cancel()


class ThreadStore(FakeStore):
    """A store that commits in a thread of its own, held until :attr:`release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def commit_in_thread(self, done: Callable[[StoreError | None], None]) -> None:
        def work() -> None:
            assert self.release.wait(10)
            self.release.clear()
            try:
                self.commit()
            except StoreError as exc:
                done(exc)
            else:
                done(None)

        threading.Thread(target=work, daemon=True).start()


async def test_the_batch_commit_runs_off_the_loop_and_holds_back_the_next_writes() -> None:
    """While clients are sending, the committer commits in the store's thread: the loop
    goes on meanwhile, the batch is not durable until the commit ends (durable, tickets),
    the store is not writable until then, and no writer commits alone meanwhile."""
    store = ThreadStore()
    committer = Committer(store)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.heard("a")
        committer.heard("b")
        store.write()
        ticket = committer.ticket()
        assert ticket is not None
        assert not committer.commit_if_alone("a")
        await trio.sleep(0.05)  # the loop runs: the commit waits in the thread
        assert not ticket.settled
        assert committer.ticket() is not None  # the batch under way still counts
        assert not committer.commit_if_alone(None)
        order: list[str] = []

        async def writer() -> None:
            await committer.writable()
            order.append("written")

        async def acknowledger() -> None:
            await committer.durable()
            order.append("durable")

        nursery.start_soon(writer)
        nursery.start_soon(acknowledger)
        await trio.sleep(0.05)
        assert order == []
        store.release.set()
        with trio.fail_after(10):
            assert await ticket.wait() is None
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(order) == ["durable", "written"]
        assert store.commits == 1 and committer.commits == 1 and committer.writes == 1
        nursery.cancel_scope.cancel()


async def test_a_commit_that_fails_off_the_loop_reaches_exactly_its_batch() -> None:
    store = ThreadStore()
    committer = Committer(store)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.heard("a")
        committer.heard("b")
        store.write()
        failing = committer.ticket()
        assert failing is not None
        store.fail = StoreFull("the disk is full")
        store.release.set()
        with trio.fail_after(10):
            assert await failing.wait() is store.fail
        store.fail = None
        await committer.writable()
        store.write()
        kept = committer.ticket()
        assert kept is not None and not kept.same_batch(failing)
        store.release.set()
        with trio.fail_after(10):
            assert await kept.wait() is None
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


async def test_hooks_and_callbacks_keep_their_places_around_a_commit_off_the_loop() -> None:
    """With the commit in the store's thread: a hook runs on the loop just before it
    (its write joins the commit), a callback asked for meanwhile hears of that commit,
    and neither runs before the thread is done."""
    store = ThreadStore()
    committer = Committer(store)  # type: ignore[arg-type]
    order: list[object] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.heard("a")
        committer.heard("b")
        store.write()

        def hook() -> None:
            order.append(("hook", store.commits))
            store.write()

        assert committer.before_commit(hook)
        ticket = committer.ticket()
        assert ticket is not None
        await trio.sleep(0.05)  # the committer took the batch to the thread
        assert order == [("hook", 0)]
        committer.when_settled(lambda error: order.append(("settled", error, store.commits)))
        assert order == [("hook", 0)]  # the commit under way is not done
        store.release.set()
        with trio.fail_after(10):
            assert await ticket.wait() is None
        assert order == [("hook", 0), ("settled", None, 1)]
        assert committer.writes == 2  # the hook's write went with the batch
        nursery.cancel_scope.cancel()
