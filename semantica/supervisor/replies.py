"""The replies of one control connection: sent in order, each once what it says is durable.

What it owns: the replies of a connection's in-order requests (everything but
``Wait``, ``Cancel``, ``Maintain`` and the streams) from the moment they are
built until they are written. What it promises:

* **Durable first.** A reply goes out only once the batch its request claimed
  (a :class:`~semantica.supervisor.committer` ticket, taken right after the
  request was carried out) is committed; if that commit failed, the reply is
  replaced (``settle``: a read is carried out again, a write's reply becomes
  the commit's error). Nothing is acknowledged before it is durable.
* **In order.** Replies are written in the order their requests came. A reply
  that is ready when nothing is queued before it is written by the reader
  itself (:meth:`Outbox.send_now`; several in one write), with no task switch;
  otherwise it is queued (:meth:`Outbox.put`) and :meth:`Outbox.run` writes it
  once its batch is committed, together with every other reply ready then, in
  one write: a pipelining client gets a commit's worth of replies at once.
* **Bounded.** At most :data:`REPLY_QUEUE` replies wait; then :meth:`put`
  waits (the connection stops reading requests) until some are sent.

How it fails: when the client is gone (a write fails), :meth:`run` returns and
every later :meth:`put` raises ``trio.BrokenResourceError``, which ends the
connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from semantica.framed import FramedStream
from semantica.protocol import (
    HEADER,
    ControlReply,
    SupervisorRequest,
    encode,
    encode_around,
    encode_items,
    list_header,
)
from semantica.supervisor.slices import FIRST_SLICE, Pace

#: Replies a connection may have waiting for their commit before reading pauses.
REPLY_QUEUE = 1000

Pending = tuple[Any, ControlReply, SupervisorRequest]  # (the batch's ticket, reply, request)
#: The reply to send for a pending one whose batch is settled (see the module docstring).
Settle = Callable[[Any, ControlReply, SupervisorRequest], Awaitable[ControlReply]]


class Outbox:
    """The replies of one connection on their way out (see the module docstring)."""

    def __init__(self, channel: FramedStream, settle: Settle) -> None:
        self._channel = channel
        self._settle = settle
        self._pending: deque[Pending] = deque()
        self._unsent = 0  # queued and not yet written (including those being written)
        self._more = trio.Event()  # set when a reply is queued or the outbox closed
        self._room = trio.Event()  # set when queued replies were written
        self._closed = False
        self._broken = False

    @property
    def empty(self) -> bool:
        """Whether no reply is queued or being written: the next one may go out at once."""
        return self._unsent == 0

    async def send_now(
        self, ticket: Any, done: list[tuple[ControlReply, SupervisorRequest]]
    ) -> None:
        """Write replies whose batch is settled (``ticket`` None: nothing was pending),
        in order, in one write (the replies of pipelined requests carried out together).

        Only when :attr:`empty`, so that they do not overtake a queued reply.
        """
        frames = []
        for reply, request in done:
            if ticket is not None and ticket.error is not None:
                reply = await self._settle(ticket, reply, request)
            frames.append(await encode_reply(reply))
        await self._channel.send_frames(frames[0] if len(frames) == 1 else b"".join(frames))

    async def put(self, ticket: Any, reply: ControlReply, request: SupervisorRequest) -> None:
        """Queue a reply to go out once ``ticket``'s batch is settled, after those before it."""
        while len(self._pending) >= REPLY_QUEUE and not self._broken:
            self._room = trio.Event()
            await self._room.wait()
        if self._broken:
            raise trio.BrokenResourceError("the client stopped taking replies")
        self._pending.append((ticket, reply, request))
        self._unsent += 1
        self._more.set()

    def close(self) -> None:
        """No more replies: :meth:`run` returns once those queued are written."""
        self._closed = True
        self._more.set()

    async def run(self) -> None:
        """Write the queued replies, in order, each once its batch is settled, until closed.

        Batches commit in order, so the replies ready at a time are a prefix
        of the queue: they go out in one write.
        """
        pending = self._pending
        try:
            while True:
                if not pending:
                    if self._closed:
                        return
                    self._more = trio.Event()
                    await self._more.wait()
                    continue
                head = pending[0][0]
                if head is not None and not head.settled:
                    await head.wait()
                ready: list[ControlReply] = []
                while pending and (pending[0][0] is None or pending[0][0].settled):
                    ticket, reply, request = pending.popleft()
                    if ticket is not None and ticket.error is not None:
                        reply = await self._settle(ticket, reply, request)
                    ready.append(reply)
                frames = [await encode_reply(reply) for reply in ready]
                try:
                    # One frame (a big one, say) goes as it is: joining would copy it.
                    await self._channel.send_frames(
                        frames[0] if len(frames) == 1 else b"".join(frames)
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                finally:
                    self._unsent -= len(ready)
                    self._room.set()
        finally:
            self._broken = True
            self._room.set()


async def encode_reply(reply: ControlReply) -> bytes:
    """``reply``'s frame; one that carries many jobs is encoded in slices (slices.py).

    Encoding the ``Enqueued`` of a maximal request (some 100,000 jobs) in one go
    would hold the event loop for a tenth of a second or more.
    """
    jobs = getattr(reply, "jobs", None)
    if not isinstance(jobs, list) or len(jobs) <= FIRST_SLICE:
        return encode(reply)
    before, after = encode_around(reply, "jobs")
    parts = [before, list_header(len(jobs))]
    pace = Pace(len(jobs))
    for start, stop in pace:
        parts.append(encode_items(jobs[start:stop]))
        await pace.rest()
    parts.append(after)
    return b"".join([HEADER.pack(sum(map(len, parts))), *parts])  # one copy of tens of MB
