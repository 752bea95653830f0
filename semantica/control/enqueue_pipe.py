"""``enqueue_many`` with several requests in flight: the next one goes out before the
reply to the one before has come.

Both clients use this module (the sync ``Client`` through :func:`enqueue_pipelined`,
the ``AsyncClient`` through :class:`Outcomes` and :data:`PIPELINE_FRAMES`). The
contract, on top of batches.py's (each request one transaction, what is committed
is always the first N jobs given, :class:`~semantica.control.batches.PartialEnqueue`
on a failure part-way):

* **Only to a supervisor that refuses a broken chain.** Each request after the
  first names the one before it (``Enqueue.follows``); a supervisor that says
  ``"follows"`` in ``HelloOk.features`` refuses it, adding nothing, when that one
  failed. An older one would carry it out, so the clients pipeline only to a
  supervisor that says it (:func:`can_pipeline`), and otherwise send one
  request at a time, as before.
* **At most** :data:`PIPELINE_FRAMES` requests in flight: the client builds and
  encodes request k+1 while the supervisor writes request k, and their costs
  overlap instead of adding up; more would only hold more memory.
* **What the caller is told stays exact.** Replies come in order. The first
  request that fails is the error; the requests sent after it were refused
  (their replies are read, to keep the connection in step, and dropped). So the
  committed jobs are those of the requests answered before it. When the
  connection is lost, the jobs of every request sent and not answered are in
  doubt (``PartialEnqueue.in_doubt``), not only those of one.
* **No deadlock on a full socket.** The sync client reads replies while it waits
  to send (the supervisor stops reading requests while its replies pile up).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from semantica.control.batches import failed_part_way, jobs_of
from semantica.errors import ProtocolError, SemanticaError, Unreachable
from semantica.models import Job, JobSpec
from semantica.protocol import Enqueue, Enqueued

#: Requests of one ``enqueue_many`` in flight at once (each up to ENQUEUE_ATOMIC_JOBS
#: jobs): two keep client and supervisor busy together; a third covers the commit.
PIPELINE_FRAMES = 3
#: What a supervisor that refuses a follower of a failed enqueue says in its hello.
FEATURE = "follows"


def can_pipeline(requests: Sequence[Sequence[JobSpec]], features: Sequence[str]) -> bool:
    """Whether to send ``requests`` pipelined: more than one, to a supervisor that can."""
    return len(requests) > 1 and FEATURE in features


class Outcomes:
    """The replies of a pipelined ``enqueue_many``, in order, and what to tell its caller."""

    def __init__(self, requests: Sequence[list[JobSpec]], total: int) -> None:
        self._requests = requests
        self._total = total
        self.enqueued: list[Job] = []
        self.error: SemanticaError | None = None
        self._unanswered = 0  # jobs of requests sent whose answer never came (lost)

    def answer(self, index: int, reply: Any) -> None:
        """Request ``index``'s reply (an ``Enqueued``, or the SemanticaError it raised).

        Replies after the first error are dropped (they are refusals; see the
        module docstring), except that a lost connection adds to what is in doubt.
        """
        if self.error is not None:
            return
        if isinstance(reply, SemanticaError):
            self.error = reply
            return
        try:
            if not isinstance(reply, Enqueued):
                raise ProtocolError(f"expected Enqueued, got {type(reply).__name__}")
            self.enqueued += jobs_of(self._requests[index], reply)
        except SemanticaError as exc:
            self.error = exc

    def lost(self, indexes: Sequence[int]) -> None:
        """The connection was lost with requests ``indexes`` sent and not answered."""
        if self.error is None or isinstance(self.error, Unreachable):
            self._unanswered += sum(len(self._requests[i]) for i in indexes)

    def result(self) -> list[Job]:
        """The jobs, or raise what batches.failed_part_way says for the first error."""
        if self.error is None:
            return self.enqueued
        raise failed_part_way(
            self.enqueued, self._total, self._unanswered, self.error
        ) from self.error


def enqueue_pipelined(
    requests: Sequence[list[JobSpec]],
    total: int,
    send: Callable[[Enqueue], int],
    receive: Callable[[], Any],
) -> list[Job]:
    """Send ``requests`` (the jobs of each), up to :data:`PIPELINE_FRAMES` in flight.

    ``send`` sends one request without waiting for its reply (reading replies while
    the socket is full) and returns its ``rid``; ``receive`` returns the next reply
    (raising an ``ErrorReply`` as its SemanticaError). Both raise ``Unreachable`` when
    the connection is lost.

    Raises:
        PartialEnqueue: a request failed after earlier ones were committed.
        SemanticaError: the first request failed (nothing was added).
    """
    outcomes = Outcomes(requests, total)
    sent: deque[int] = deque()  # indexes of the requests sent and not answered
    follows = 0

    def take() -> None:
        index = sent.popleft()
        try:
            reply = receive()
        except Unreachable as exc:
            outcomes.answer(index, exc)
            outcomes.lost([index, *sent])
            sent.clear()
            return
        except SemanticaError as exc:
            reply = exc
        outcomes.answer(index, reply)

    for index, jobs in enumerate(requests):
        if len(sent) == PIPELINE_FRAMES:
            take()
        if outcomes.error is not None:
            break
        try:
            follows = send(Enqueue(jobs=jobs, brief=True, follows=follows))
        except Unreachable as exc:
            outcomes.answer(index, exc)
            outcomes.lost(sent)  # (not this one: a frame cut short is never carried out)
            sent.clear()
            break
        except SemanticaError as exc:  # nothing of it went out (BadInput)
            while sent:
                take()  # those before it are answered first, and count
            outcomes.answer(index, exc)
            break
        sent.append(index)
    while sent:
        take()
    return outcomes.result()
