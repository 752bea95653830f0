"""The jobs page: every job, newest first, filtered, fifty at a time, live.

``GET /jobs?state=&queue=&type=&subject=&before=`` lists the jobs that match every
filter given; ``before`` (the last id of a page) asks for the next, older page, so a
page costs the same at the 100,000th job as at the first (keyset pagination). The
table redraws itself when jobs change (``/live/jobs`` with the same query).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semantica.control.web.access import fragment, render, session_of, web_of
from semantica.control.web.live import redraw
from semantica.errors import SemanticaError
from semantica.models import JobState

PAGE = 50
FILTERS = ("state", "queue", "type", "subject")
STATES = [state.value for state in JobState]


class Query:
    """A jobs page's filters and place, read from the URL; ``problem`` if one is bad."""

    def __init__(self, request: Request) -> None:
        params = request.query_params
        self.filters: dict[str, str] = {
            name: params[name].strip() for name in FILTERS if params.get(name, "").strip()
        }
        self.problem = ""
        state = self.filters.get("state")
        if state is not None:
            self.filters["state"] = state.upper()
            if state.upper() not in STATES:
                self.problem = f"unknown state {state!r}: one of {', '.join(STATES)}"
        self.before: int | None = None
        raw = params.get("before", "")
        self.before_given = raw  # as typed: the live table must see a bad one too
        if raw:
            try:
                self.before = int(raw)
            except ValueError:
                self.problem = f"before must be a job id, not {raw!r}"
            else:
                if not 1 <= self.before < 2**63:
                    self.problem = f"before must be a job id, not {raw!r}"
                    self.before = None

    def url(self, path: str, **more: object) -> str:
        """``path`` with these filters, changed by ``more`` (a None value drops one)."""
        merged: dict[str, object] = {**self.filters, **more}
        params = {k: str(v) for k, v in merged.items() if v is not None}
        return f"{path}?{urlencode(params)}" if params else path

    def live_url(self) -> str:
        # ``before`` as given, not as read: a bad one left out would redraw the page
        # as the newest jobs, without the problem the page said.
        return self.url("/live/jobs", before=self.before_given or None)


async def table(request: Request, query: Query) -> dict[str, Any]:
    """What the jobs table shows: the page of jobs, or why there is none."""
    context: dict[str, Any] = {
        "query": query,
        "states": STATES,
        "jobs": [],
        "problem": query.problem,
        "total": None,
        "capped": False,
        "older": None,
    }
    if query.problem:
        return context
    try:
        jobs = await web_of(request).client.list(**query.filters, limit=PAGE, before=query.before)
    except SemanticaError as exc:
        context["problem"] = exc.message
        return context
    context["jobs"] = jobs
    context["total"] = None if query.before else jobs.total
    context["capped"] = jobs.total_capped
    if len(jobs) == PAGE:
        context["older"] = query.url("/jobs", before=jobs[-1].id)
    return context


async def jobs_page(request: Request) -> Response:
    session = session_of(request)
    query = Query(request)
    context = await table(request, query)
    return render(
        request,
        "jobs.html",
        session,
        page="jobs",
        status_code=400 if query.problem else 200,
        **context,
    )


async def jobs_live(request: Request) -> Response:
    session_of(request)
    query = Query(request)
    web = web_of(request)

    async def draw() -> str:
        return fragment(request, "_jobs_table.html", **await table(request, query))

    return redraw(web.changes, draw)


ROUTES = [
    Route("/jobs", jobs_page, methods=["GET"]),
    Route("/live/jobs", jobs_live, methods=["GET"]),
]
