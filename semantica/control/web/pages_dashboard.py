"""The dashboard: the engine at a glance, redrawn every second from ``top``.

Every open dashboard draws from the one ``top`` reply the view asks for each second
(:class:`~semantica.control.web.live.TopFeed`), so ten open tabs cost the supervisor
what one does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semantica.control.web.access import fragment, render, session_of, web_of
from semantica.control.web.live import event_stream, on_change
from semantica.errors import SemanticaError
from semantica.protocol import TopReply


def board(top: TopReply | SemanticaError | None) -> dict[str, Any]:
    """What the dashboard shows of a ``top`` reply (or of the error instead of one)."""
    if isinstance(top, SemanticaError):
        return {"top": None, "problem": top.message}
    return {"top": top, "problem": ""}


async def dashboard(request: Request) -> Response:
    session = session_of(request)
    try:
        top: TopReply | SemanticaError = await web_of(request).client.top()
    except SemanticaError as exc:
        top = exc
    return render(request, "dashboard.html", session, page="dashboard", **board(top))


async def dashboard_live(request: Request) -> Response:
    session_of(request)
    feed = web_of(request).top

    async def draw() -> str:
        return fragment(request, "_dashboard.html", **board(feed.latest.value))

    async def fragments() -> AsyncIterator[str | None]:
        async with feed.listen():
            if feed.latest.value is None:  # the first listener: draw the first reply
                await feed.latest.next(0)
            async for part in on_change(feed.latest, draw, pause=0):
                yield part

    return event_stream(fragments())


ROUTES = [
    Route("/", dashboard, methods=["GET"]),
    Route("/live/dashboard", dashboard_live, methods=["GET"]),
]
