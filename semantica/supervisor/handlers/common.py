"""What several request handlers share: the reply budget, the retry of a busy store.

A handler's write to the store goes through :func:`store_write`: the store
fails fast while another process holds it (the loop must not wait in SQLite),
so this waits off the loop and tries again, for ``BUSY_PATIENCE_S`` at most,
then lets StoreBusy reach the client (``store_busy``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from semantica.errors import StoreBusy
from semantica.protocol import ControlReply
from semantica.supervisor.services import Services
from semantica.supervisor.store import BUSY_PATIENCE_S
from semantica.supervisor.store_retry import Backoff, retry_store

#: Job ids one ``wait`` or ``cancel`` may name.
MAX_WAIT_IDS = 10_000
#: Room in a frame for what a reply holds besides its jobs (the tag, rid, more, total).
REPLY_ENVELOPE = 256

#: How a streaming handler pushes a message before its last one.
Send = Callable[[ControlReply], Awaitable[None]]

T = TypeVar("T")


def reply_budget(services: Services) -> int:
    """The bytes of jobs one reply may carry: what fits in a frame of the supervisor's cap.

    A reply of many jobs (``list``, ``wait``) stops there and says ``more``;
    the client asks for the rest. A reply always holds at least one job, so a
    single job larger than the cap (a large payload and a 1 MiB result) still
    comes whole, alone.
    """
    return max(services.settings.max_frame - REPLY_ENVELOPE, 1)


async def store_write(services: Services, write: Callable[[], T]) -> T:
    """Run a request's store write; while another process holds the database's
    write lock, wait for it here, off the event loop, and try again.

    The store fails fast when busy (``JobStore.fail_fast_when_busy``), so ``write``
    fails fast with StoreBusy and has changed nothing; after
    ``BUSY_PATIENCE_S`` the StoreBusy goes to the client (``store_busy``).
    Meanwhile every other request, reads included, is served.
    """

    async def attempt() -> T:
        return write()

    return await retry_store(
        attempt,
        Backoff(0.01, 0.25),
        errors=(StoreBusy,),
        deadline=trio.current_time() + BUSY_PATIENCE_S,
        before_each=services.gate.passage,  # a forced VACUUM holds the store: wait, off the loop
    )
