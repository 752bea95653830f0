"""The schedules pages: every schedule, one schedule with its last runs, and their actions.

``GET /schedules`` lists every schedule (when, its zone, the next fire, paused, the
last run and its job's state, the job it makes); with none, it says how to add one.
``GET /schedules/NAME`` shows one schedule whole, with its last
:data:`RUNS` runs. Both redraw after job changes (a slot that fires makes a job).
Actions, each a POST with the session's CSRF token:

* ``/schedules/NAME/pause`` and ``/resume``: its slots give no job / give them again;
* ``/schedules/NAME/run``: make its job now, outside its slots ("Schedule X made job N").

A name that is no schedule is the supervisor's one-line refusal (in the flash for an
action, on the page for ``/schedules/NAME``, with status 404), and nothing changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
from semantica.control.web.schedule_rows import schedule_row
from semantica.errors import SemanticaError
from semantica.schedules import NoSuchSchedule

#: How many of a schedule's runs its own page shows.
RUNS = 20


async def _list(request: Request) -> dict[str, Any]:
    """What the schedules table shows: every schedule, or why there is none."""
    try:
        schedules = await web_of(request).client.schedules()
    except SemanticaError as exc:
        return {"schedules": [], "problem": exc.message, "reached": False}
    rows = [schedule_row(schedule) for schedule in schedules]
    return {"schedules": rows, "problem": "", "reached": True}


async def _one(request: Request, name: str) -> dict[str, Any]:
    """What a schedule's page shows: the schedule whole, or why it cannot."""
    try:
        schedule = await web_of(request).client.get_schedule(name, runs=RUNS)
    except NoSuchSchedule as exc:
        return {"schedule": None, "problem": exc.message, "missing": True, "schedule_name": name}
    except SemanticaError as exc:
        return {"schedule": None, "problem": exc.message, "missing": False, "schedule_name": name}
    row = schedule_row(schedule, details=True)
    return {"schedule": row, "problem": "", "missing": False, "schedule_name": name}


def _live(
    request: Request, template: str, read: Callable[[], Awaitable[dict[str, Any]]]
) -> Response:
    session = session_of(request)
    changes = web_of(request).changes

    async def draw() -> str:
        return fragment(request, template, csrf=session.csrf, **await read())

    return redraw(changes, draw)


async def schedules_page(request: Request) -> Response:
    session = session_of(request)
    context = await _list(request)
    return render(request, "schedules.html", session, page="schedules", **context)


async def schedules_live(request: Request) -> Response:
    return _live(request, "_schedules.html", lambda: _list(request))


async def schedule_page(request: Request) -> Response:
    session = session_of(request)
    name = request.path_params["name"]
    context = await _one(request, name)
    status = 404 if context["missing"] else 200
    return render(
        request, "schedule.html", session, page="schedules", status_code=status, **context
    )


async def schedule_live(request: Request) -> Response:
    name = request.path_params["name"]
    return _live(request, "_schedule.html", lambda: _one(request, name))


async def pause(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        await web_of(request).client.pause_schedule(name)
        return f"Schedule {name} paused: its slots make no job until resumed"

    return await act(request, "/schedules", do)


async def resume(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        row = schedule_row(await web_of(request).client.resume_schedule(name))
        return f"Schedule {name} resumed: next job due {row.next_text}"

    return await act(request, "/schedules", do)


async def run(request: Request) -> Response:
    name = request.path_params["name"]

    async def do(form: FormData) -> str:
        job = await web_of(request).client.run_schedule(name)
        return f"Schedule {name} made job {job.id}"

    return await act(request, "/schedules", do)


ROUTES = [
    Route("/schedules", schedules_page, methods=["GET"]),
    Route("/live/schedules", schedules_live, methods=["GET"]),
    Route("/schedules/{name}", schedule_page, methods=["GET"]),
    Route("/live/schedules/{name}", schedule_live, methods=["GET"]),
    Route("/schedules/{name}/pause", pause, methods=["POST"]),
    Route("/schedules/{name}/resume", resume, methods=["POST"]),
    Route("/schedules/{name}/run", run, methods=["POST"]),
]
