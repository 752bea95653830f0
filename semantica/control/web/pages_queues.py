"""The queues page: every queue with its jobs by state, and its settings' actions.

``GET /queues`` lists every queue (``queues``: its counts by state, paused, limit),
redrawn after job changes (queue counts move with jobs). Each queue has three
actions, each a POST with the session's CSRF token:

* ``/queues/NAME/pause``: start none of its jobs (running ones go on);
* ``/queues/NAME/resume``: start them again;
* ``/queues/NAME/limit`` with ``limit``: at most that many running at once (0: no cap).

An action names an existing queue only (``create=False``): a name that is no queue,
or is no valid name at all, is the supervisor's one-line refusal in the flash, and
nothing changes; so is a limit that is not a whole number in range.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semantica.control.web.access import (
    act,
    fragment,
    render,
    session_of,
    web_of,
)
from semantica.control.web.live import redraw
from semantica.errors import BadInput, SemanticaError
from semantica.models import QUEUE_LIMIT_MAX, JobState, QueueInfo

#: The columns of counts, in a job's life order.
STATES = [state.value for state in JobState]


async def _queues(request: Request) -> dict[str, Any]:
    """What the queues table shows: every queue, or why there is none."""
    try:
        queues = await web_of(request).client.queues()
    except SemanticaError as exc:
        return {"queues": [], "problem": exc.message, "states": STATES}
    return {"queues": queues, "problem": "", "states": STATES}


async def queues_page(request: Request) -> Response:
    session = session_of(request)
    context = await _queues(request)
    return render(request, "queues.html", session, page="queues", **context)


async def queues_live(request: Request) -> Response:
    session = session_of(request)
    changes = web_of(request).changes

    async def draw() -> str:
        return fragment(request, "_queues.html", csrf=session.csrf, **await _queues(request))

    return redraw(changes, draw)


def _limit_text(info: QueueInfo) -> str:
    if not info.limit:
        return f"Queue {info.name} has no limit now"
    running = "job runs" if info.limit == 1 else "jobs run"
    return f"Queue {info.name}: at most {info.limit} {running} at once"


async def pause(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        info = await web_of(request).client.pause(name, create=False)
        return f"Queue {info.name} paused: none of its jobs starts until resumed"

    return await act(request, "/queues", do)


async def resume(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        info = await web_of(request).client.resume(name)
        return f"Queue {info.name} resumed"

    return await act(request, "/queues", do)


def _parse_limit(raw: object) -> int:
    """The limit a form gave; BadInput (nothing changes) unless a whole number in range."""
    given = raw.strip() if isinstance(raw, str) else ""
    try:
        limit = int(given)
    except ValueError:
        limit = -1
    if not 0 <= limit <= QUEUE_LIMIT_MAX:
        got = f"got {given[:20]!r}" if given else "the field was empty"
        raise BadInput(
            f"the limit must be a whole number from 0 (no cap) to {QUEUE_LIMIT_MAX}, "
            f"{got}: nothing changed"
        )
    return limit


async def limit(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        value = _parse_limit(form.get("limit"))
        return _limit_text(await web_of(request).client.limit(name, value, create=False))

    return await act(request, "/queues", do)


ROUTES = [
    Route("/queues", queues_page, methods=["GET"]),
    Route("/live/queues", queues_live, methods=["GET"]),
    Route("/queues/{name}/pause", pause, methods=["POST"]),
    Route("/queues/{name}/resume", resume, methods=["POST"]),
    Route("/queues/{name}/limit", limit, methods=["POST"]),
]
