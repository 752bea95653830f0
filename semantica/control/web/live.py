"""Live pages: what the supervisor says, shared by every open page, sent as server-sent events.

Contract:

* A source runs only while a page listens, and one runs for all of them: however many
  dashboards are open, the supervisor is asked for ``top`` once a second
  (:class:`TopFeed`); however many job lists are open, one ``changes`` stream tells
  them that jobs changed, at most once a second (:class:`ChangeFeed`). A page's own
  reads (its page of jobs) happen only after a change, at most once a second per page.
* A source that cannot reach the supervisor publishes the error (pages say so) and
  tries again every second; pages recover by themselves when it comes back.
* :func:`event_stream` turns a page's async iterator of fragments into a
  ``text/event-stream`` response; a fragment equal to the one sent before is not
  sent again; a comment goes out every :data:`KEEPALIVE_S` so a closed tab is noticed
  (the write fails) and proxies keep the stream open. A fragment may carry its
  event's ``id`` (:class:`Numbered`: a log's lines say how many were sent, so that a
  browser reconnecting with ``Last-Event-ID`` gets only the rest).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, NamedTuple, TypeVar

import trio
from starlette.responses import StreamingResponse

from semantica.control.async_client import AsyncClient
from semantica.errors import SemanticaError
from semantica.protocol import TopReply

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How often the dashboards' source asks for ``top``, and the least time between two
#: reads of one page after changes.
PERIOD_S = 1.0
KEEPALIVE_S = 15.0
#: The most a closed page's reads may take to let go of what they hold.
CLOSE_S = 2.0


class Latest(Generic[T]):
    """The latest value of a source, and a way to wait for the next one."""

    def __init__(self, value: T) -> None:
        self.value = value
        self.version = 0
        self._changed = trio.Event()

    def publish(self, value: T) -> None:
        self.value = value
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def next(self, seen: int) -> int:
        """Wait until a value newer than version ``seen`` is published; its version."""
        while self.version == seen:
            await self._changed.wait()
        return self.version


class _Shared:
    """A background source that runs while at least one listener is in :meth:`listen`;
    an unexpected error restarts it (after a second) rather than end the view."""

    latest: Latest[Any]

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._listeners = 0
        self._scope: trio.CancelScope | None = None

    @asynccontextmanager
    async def listen(self) -> AsyncIterator[None]:
        self._listeners += 1
        if self._scope is None:
            self._scope = trio.CancelScope()
            self._nursery.start_soon(self._run_in, self._scope)
        try:
            yield
        finally:
            self._listeners -= 1
            if self._listeners == 0 and self._scope is not None:
                self._scope.cancel()
                self._scope = None
                self._stopped()

    def _stopped(self) -> None:
        """The last listener left (the source stops)."""

    async def ready(self) -> None:
        """Until the source has something to draw from (at once, unless it says)."""

    async def _run_in(self, scope: trio.CancelScope) -> None:
        with scope:
            while True:
                try:
                    await self._run()
                except Exception as exc:  # a defect must not end the whole view
                    log.exception("a live source failed; starting it again")
                    self._failed(exc)
                    await trio.sleep(PERIOD_S)

    def _failed(self, exc: Exception) -> None:
        """The source raised something unexpected (pages say so until it works again)."""
        self.latest.publish(SemanticaError(f"the web view could not read the supervisor: {exc}"))

    async def _run(self) -> None:
        raise NotImplementedError


class TopFeed(_Shared):
    """``top`` once a second, for every dashboard: a :class:`TopReply` or the error."""

    def __init__(self, client: AsyncClient, nursery: trio.Nursery) -> None:
        super().__init__(nursery)
        self._client = client
        self.latest: Latest[TopReply | SemanticaError | None] = Latest(None)

    def _stopped(self) -> None:
        # A reply from before the pause is stale: the next dashboard waits for a new one
        # rather than drawing an old one over the page it was just served.
        self.latest.value = None

    async def ready(self) -> None:
        if self.latest.value is None:  # the first listener: draw the first reply
            await self.latest.next(self.latest.version)

    async def _run(self) -> None:
        while True:
            try:
                self.latest.publish(await self._client.top())
            except SemanticaError as exc:
                self.latest.publish(exc)
            await trio.sleep(PERIOD_S)


class ChangeFeed(_Shared):
    """One ``changes`` stream for every page that shows jobs: its version grows when
    jobs changed (at most once a second, however many job events there were), when the
    stream starts listening (what changed before is unknown), and when the supervisor
    goes away."""

    def __init__(self, client: AsyncClient, nursery: trio.Nursery) -> None:
        super().__init__(nursery)
        self._client = client
        self.latest: Latest[SemanticaError | None] = Latest(None)

    async def _run(self) -> None:
        while True:
            try:
                stream = self._client.changes(PERIOD_S)
                async with stream:
                    # The first tick comes as the stream starts listening: what changed
                    # before (since the pages drew, or while the supervisor was away) is
                    # unknown, so pages redraw then too.
                    async for _seq in stream:
                        self.latest.publish(None)
            except SemanticaError as exc:
                self.latest.publish(exc)
            await trio.sleep(PERIOD_S)


async def on_change(
    latest: Latest[T],
    render: Callable[[], Awaitable[str]],
    pause: float = PERIOD_S,
    every: Callable[[], float | None] = lambda: None,
) -> AsyncIterator[str | None]:
    """A page's fragments: rendered now, then again after each change (at most once per
    ``pause`` seconds: changes within it are drawn together), and after ``every()``
    seconds without one when it says so (a running job's progress, which is no event),
    for as long as the page listens; None when nothing changed for :data:`KEEPALIVE_S`
    (the stream sends a comment)."""
    seen = latest.version
    while True:
        drawn = trio.current_time()
        yield await render()
        again = every()
        while True:
            with trio.move_on_after(KEEPALIVE_S if again is None else again):
                seen = await latest.next(seen)
                break
            if again is not None:
                break
            yield None
        # A change a while after the last drawing is drawn at once; changes that
        # come quicker are drawn together, once per ``pause``.
        await trio.sleep_until(drawn + pause)
        seen = latest.version


def redraw(
    source: _Shared,
    render: Callable[[], Awaitable[str]],
    pause: float = PERIOD_S,
    every: Callable[[], float | None] = lambda: None,
) -> StreamingResponse:
    """The live stream of a part of a page: ``render`` drawn now and after each change
    of ``source`` (as :func:`on_change` says), while the page listens."""

    async def fragments() -> AsyncIterator[str | None]:
        async with source.listen():
            await source.ready()
            async for part in on_change(source.latest, render, pause, every):
                yield part

    return event_stream(fragments())


class Numbered(NamedTuple):
    """A fragment sent with its event's ``id``, which the browser sends back as
    ``Last-Event-ID`` when it reconnects (an id never holds a line break)."""

    data: str
    id: int


class Ended(Exception):
    """Raised by a page's fragments to close its stream with the ``end`` event, where
    running out of fragments means "reconnect" (a source that went away)."""


def _event(data: str, name: str | None = None, event_id: int | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    if event_id is not None:
        head += f"id: {event_id}\n"
    return (head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n").encode()


def event_stream(
    fragments: AsyncIterator[str | Numbered | None],
    *,
    dedupe: bool = True,
    end: str | None = None,
    end_only_if_ended: bool = False,
) -> StreamingResponse:
    """A ``text/event-stream`` of ``fragments``, then an ``end`` event with ``end`` as its
    data when they run out. A None fragment sends a keepalive comment; with ``dedupe``, a
    fragment equal to the one sent before is not sent again (a log's lines are each sent).
    A :class:`Numbered` fragment goes out with its ``id``.

    With ``end_only_if_ended``, the ``end`` event is sent only when the fragments raise
    :class:`Ended`; running out closes the stream without it, and the browser's
    EventSource connects again by itself (with the last id it got).
    """

    async def body() -> AsyncIterator[bytes]:
        sent: str | None = None
        ended = not end_only_if_ended
        try:
            async for fragment in fragments:
                if fragment is None:
                    yield b": keepalive\n\n"
                    continue
                data, event_id = (
                    (fragment.data, fragment.id)
                    if isinstance(fragment, Numbered)
                    else (fragment, None)
                )
                if not dedupe or data != sent:
                    sent = data
                    yield _event(data, event_id=event_id)
        except Ended:
            ended = True
        finally:
            # A closed tab cancels this at a yield: the page's own reads end now (its
            # hold on a shared source, a log's follow), not when the collector runs.
            close = getattr(fragments, "aclose", None)
            if close is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_S):
                    await close()
        if end is not None and ended:
            yield _event(end, "end")

    headers = {"X-Accel-Buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
