"""The web view's ASGI application: its routes, behind :class:`~.guard.Guard`.

Every page module lists its routes (``ROUTES``); this joins them, serves
``static/`` (our own script and style, nothing from elsewhere), and answers the
access errors the same way on every page: no session, a redirect to ``/login``
for a page and ``401`` for a live stream or an action; a bad CSRF token, ``403``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from semantica.control.web import (
    pages_dashboard,
    pages_enqueue,
    pages_job,
    pages_jobs,
    pages_login,
    pages_queues,
    pages_schedules,
)
from semantica.control.web.access import STATIC, Forbidden, NeedLogin, Web
from semantica.control.web.guard import Guard


async def _need_login(request: Request, exc: Exception) -> Response:
    if request.method == "GET" and not request.url.path.startswith("/live/"):
        return RedirectResponse("/login", status_code=303)
    return PlainTextResponse("log in first: open the URL semctl web printed\n", status_code=401)


async def _forbidden(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(
        "refused: this form is stale or came from elsewhere (reload the page)\n", status_code=403
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "error"
    return PlainTextResponse(f"{detail}\n", status_code=status)


def build(web: Web, hosts: frozenset[str]) -> ASGIApp:
    """The whole application for one ``semctl web`` process."""
    routes = [
        *pages_login.ROUTES,
        *pages_dashboard.ROUTES,
        *pages_jobs.ROUTES,
        *pages_job.ROUTES,
        *pages_enqueue.ROUTES,
        *pages_queues.ROUTES,
        *pages_schedules.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            NeedLogin: _need_login,
            Forbidden: _forbidden,
            HTTPException: _http_error,
        },
    )
    app.state.web = web
    return Guard(app, hosts)
