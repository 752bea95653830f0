"""Enqueues that follow one another on a connection: a follower is refused when its
predecessor failed.

What it owns: for one control connection, what became of its ``Enqueue`` requests,
as much as a later one that names them in ``Enqueue.follows`` needs. A pipelining
``enqueue_many`` sends request k+1 before the reply to request k has come, naming
k there; each request is one transaction, and the caller is promised that what was
committed is always the first N jobs given. That holds only if k+1 is not carried
out once k failed: this module says when it must be refused.

What it promises (:meth:`EnqueueChains.refusal`, asked before a follower is carried
out; :meth:`EnqueueChains.record`, told of every enqueue's reply as it is queued):

* **A failed predecessor refuses its follower.** A predecessor failed when its
  reply is an ``ErrorReply`` (refused, or a slice failed), or when the commit its
  writes went into failed (they were undone). The refusal (``batch_broken``) adds
  nothing and is itself a failure, so a chain stays broken to its end.
* **A predecessor in the open batch is good enough.** If it is carried out and
  its batch is still open, the follower goes into the same batch: both commit, or
  both are undone and both replies say so. If its batch is being committed (not
  yet settled) the follower waits for that commit's outcome first.
* **Bounded.** It remembers the failures of the last :data:`FAILED_MEMORY`
  enqueues and the tickets of batches not yet settled, nothing else. A follower
  of an enqueue not remembered follows a success (or an enqueue never sent,
  which is its client's mistake), unless failures were forgotten since that
  rid could have been one of them: then it is refused rather than risk it.
  After a frame the server could not read (its ``rid`` unknown, so whose it
  was is unknown), every follower of an enqueue no longer pending is refused.

How it fails: it does not; a refusal is an ``ErrorReply`` like any other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from semantica.protocol import EnqueueLazy, ErrorReply
from semantica.supervisor.committer import Committer

#: How many failed enqueues of a connection are remembered for their followers.
FAILED_MEMORY = 1024
#: The error code of a follower refused because its predecessor failed.
BATCH_BROKEN = "batch_broken"


class EnqueueChains:
    """What a connection's followers need to know of its enqueues (see the module docstring)."""

    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        self._failed: dict[int, None] = {}  # rids, oldest first
        self._pending: dict[int, Any] = {}  # rid -> ticket of a batch not known settled
        self._order: deque[int] = deque()  # rids of _pending in the order they came
        self._floor: float = 0  # a rid up to this may have failed and been forgotten

    def record(self, ticket: Any, done: Iterable[tuple[Any, Any]]) -> None:
        """Note the outcome of the requests of ``done`` (reply, request), their replies
        just queued; ``ticket`` is the batch they claimed (None: nothing pending)."""
        self._settle()  # (here too: a connection whose enqueues nobody follows keeps none)
        for reply, request in done:
            if not isinstance(request, EnqueueLazy):
                continue
            rid = request.rid
            self._pending.pop(rid, None)  # (a rid used again: the latest one counts)
            if isinstance(reply, ErrorReply):
                self._fail(rid)
            elif ticket is None or ticket.settled:
                if ticket is not None and ticket.error is not None:
                    self._fail(rid)
                else:
                    self._failed.pop(rid, None)
            else:
                self._failed.pop(rid, None)
                self._pending[rid] = ticket
                self._order.append(rid)

    def unreadable(self) -> None:
        """A frame could not be read: it may have been an enqueue that others follow."""
        self._floor = math.inf

    async def refusal(self, request: EnqueueLazy) -> ErrorReply | None:
        """The refusal of ``request`` if it must not be carried out; None if it may."""
        follows = request.follows
        if not follows:
            return None
        self._settle()
        ticket = self._pending.get(follows)
        if ticket is not None:
            # Still open, the batch it went into takes this one's writes too: committed
            # together, or undone together. (Not one already being committed in the
            # store's thread: this one's writes would go into the next batch.)
            mine = self._committer.open_ticket()
            if mine is not None and ticket.same_batch(mine):
                return None
            if await ticket.wait() is None:  # an earlier batch, being committed
                return None
            self._pending.pop(follows, None)  # (it failed; _settle skips it in _order)
            self._fail(follows)
        if follows in self._failed:
            self._failed.pop(follows)  # (a chain follows each enqueue once)
            why = f"the enqueue it follows (rid {follows}) failed"
        elif follows <= self._floor:
            why = f"whether the enqueue it follows (rid {follows}) failed is not known"
        else:
            return None
        self._fail(request.rid)
        return ErrorReply(
            rid=request.rid,
            code=BATCH_BROKEN,
            message=f"not carried out: {why}; nothing of this request was added",
        )

    def _settle(self) -> None:
        """Move enqueues whose batch is settled out of the pending ones (batches settle
        in order, so those are the oldest)."""
        order, pending = self._order, self._pending
        while order:
            rid = order[0]
            ticket = pending.get(rid)
            if ticket is not None and not ticket.settled:
                return
            order.popleft()
            if ticket is not None:
                del pending[rid]
                if ticket.error is not None:
                    self._fail(rid)

    def _fail(self, rid: int) -> None:
        failed = self._failed
        failed.pop(rid, None)
        failed[rid] = None
        if len(failed) > FAILED_MEMORY:
            oldest = next(iter(failed))
            del failed[oldest]
            self._floor = max(self._floor, oldest)
