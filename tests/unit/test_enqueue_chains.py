"""A connection's enqueues and those that follow them (enqueue_chains.py): a follower is
refused once its predecessor failed, whether refused outright or undone with its
batch's commit, and carried out when its predecessor is committed or in the open batch."""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec
import trio

from semantica.errors import StoreFull
from semantica.protocol import Enqueued, EnqueueLazy, ErrorReply
from semantica.supervisor.committer import Committer
from semantica.supervisor.enqueue_chains import BATCH_BROKEN, FAILED_MEMORY, EnqueueChains


class FakeStore:
    """What the committer uses of a store: a write tells it, a commit may fail."""

    def __init__(self) -> None:
        self.on_write: Callable[[], None] | None = None
        self.fail: StoreFull | None = None

    def defer_commits(self, on_write: Callable[[], None]) -> None:
        self.on_write = on_write

    def write(self) -> None:
        assert self.on_write is not None
        self.on_write()

    def commit(self) -> None:
        if self.fail is not None:
            raise self.fail


def _setup() -> tuple[EnqueueChains, Committer, FakeStore]:
    store = FakeStore()
    committer = Committer(store)  # type: ignore[arg-type]
    return EnqueueChains(committer), committer, store


def enqueue(rid: int, follows: int = 0) -> EnqueueLazy:
    return EnqueueLazy(jobs=[msgspec.Raw(b"\x80")], rid=rid, follows=follows)


def carried_out(
    chains: EnqueueChains, committer: Committer, store: FakeStore, request: EnqueueLazy
) -> None:
    """``request`` written and its reply queued, as the server does."""
    store.write()
    chains.record(committer.ticket(), [(Enqueued(jobs=[], rid=request.rid), request)])


def refused(chains: EnqueueChains, request: EnqueueLazy, code: str = "bad_input") -> None:
    chains.record(None, [(ErrorReply(rid=request.rid, code=code, message="no"), request)])


async def test_a_follower_of_a_committed_enqueue_is_carried_out() -> None:
    chains, committer, store = _setup()
    carried_out(chains, committer, store, enqueue(1))
    committer.commit_now()
    assert await chains.refusal(enqueue(2, follows=1)) is None


async def test_a_follower_of_an_enqueue_in_the_open_batch_is_carried_out() -> None:
    """Both go into one commit: both are kept, or both undone."""
    chains, committer, store = _setup()
    carried_out(chains, committer, store, enqueue(1))
    assert await chains.refusal(enqueue(2, follows=1)) is None


async def test_a_follower_of_a_refused_enqueue_is_refused_and_so_down_the_chain() -> None:
    chains, _, _ = _setup()
    refused(chains, enqueue(1))
    second = await chains.refusal(enqueue(2, follows=1))
    assert second is not None and second.code == BATCH_BROKEN and second.rid == 2
    chains.record(None, [(second, enqueue(2, follows=1))])
    third = await chains.refusal(enqueue(3, follows=2))
    assert third is not None and third.code == BATCH_BROKEN


async def test_a_follower_of_an_enqueue_whose_commit_failed_is_refused() -> None:
    """Its writes were undone with the batch: it failed, though its reply was built."""
    chains, committer, store = _setup()
    carried_out(chains, committer, store, enqueue(1))
    store.fail = StoreFull("disk full")
    committer.commit_now()
    store.fail = None
    refusal = await chains.refusal(enqueue(2, follows=1))
    assert refusal is not None and refusal.code == BATCH_BROKEN


async def test_requests_that_follow_nothing_are_never_refused() -> None:
    chains, _, _ = _setup()
    refused(chains, enqueue(1))
    assert await chains.refusal(enqueue(2)) is None


async def test_forgotten_failures_refuse_rather_than_risk_it() -> None:
    """Only the last FAILED_MEMORY failures are kept: a follower of an older rid that may
    have failed is refused; one of a newer unknown rid (a success) is not."""
    chains, _, _ = _setup()
    for rid in range(1, FAILED_MEMORY + 3):
        refused(chains, enqueue(rid))
    assert await chains.refusal(enqueue(10_000, follows=1)) is not None
    assert await chains.refusal(enqueue(10_001, follows=2)) is not None
    assert await chains.refusal(enqueue(10_002, follows=5_000)) is None


async def test_after_an_unreadable_frame_followers_of_settled_enqueues_are_refused() -> None:
    """The unreadable frame's rid is not known: it may have been the one followed."""
    chains, committer, store = _setup()
    carried_out(chains, committer, store, enqueue(1))
    committer.commit_now()
    chains.unreadable()
    assert await chains.refusal(enqueue(3, follows=2)) is not None
    carried_out(chains, committer, store, enqueue(4))
    assert await chains.refusal(enqueue(5, follows=4)) is None  # pending: known good


async def test_a_connection_that_never_follows_keeps_nothing_of_its_committed_enqueues() -> None:
    """A pipelining client sends thousands of enqueues a second on one connection:
    what the chains keep of them stays bounded by what is not yet committed."""
    chains, committer, store = _setup()
    for rid in range(1, 10_001):
        carried_out(chains, committer, store, enqueue(rid))
        if rid % 100 == 0:
            committer.commit_now()
    assert len(chains._pending) <= 100 and len(chains._order) <= 100


class ThreadStore(FakeStore):
    """A store whose commit runs in a thread of its own, held until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def commit_in_thread(self, done: Callable[[StoreFull | None], None]) -> None:
        def work() -> None:
            assert self.release.wait(10)
            done(self.fail)

        threading.Thread(target=work, daemon=True).start()


async def test_a_follower_read_while_its_predecessor_commits_in_the_thread_waits_for_it() -> None:
    """The predecessor's batch went to the store's thread (other clients are sending):
    the follower's writes would go into the next batch, so it waits for that commit's
    outcome, and is refused when it failed (its writes would outlive the predecessor's)."""
    store = ThreadStore()
    committer = Committer(store)  # type: ignore[arg-type]
    chains = EnqueueChains(committer)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.heard("a")
        committer.heard("b")  # another client: the committer commits in the thread
        carried_out(chains, committer, store, enqueue(1))
        await trio.sleep(0.05)  # the batch is in the thread now, the open one empty
        assert committer.open_ticket() is None and committer.ticket() is not None
        outcome: list[ErrorReply | None] = []
        answered = trio.Event()

        async def follower() -> None:
            outcome.append(await chains.refusal(enqueue(2, follows=1)))
            answered.set()

        nursery.start_soon(follower)
        await trio.sleep(0.05)
        assert outcome == []  # waits for the predecessor's commit
        store.fail = StoreFull("the disk is full")
        store.release.set()
        with trio.fail_after(10):
            await answered.wait()
        [reply] = outcome
        assert reply is not None and reply.code == BATCH_BROKEN
        nursery.cancel_scope.cancel()
