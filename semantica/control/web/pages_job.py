"""A job's page: every field, its log following live, and what can be done to it.

``GET /jobs/ID`` shows what ``semctl show`` shows (and links what it names: the jobs
it waits for and those that wait for it, the job that superseded it), then its log.
The details redraw themselves (``/live/job/ID``) after each change of the engine's
jobs, and every :data:`RUNNING_S` while the job runs (its progress is not an event);
the log follows live (:mod:`.live_log`). A job that does not exist, or an id out of
range: ``404`` "no job N".

Actions, each a CSRF-checked POST that says what it did in a flash and goes back:

* ``POST /jobs/ID/cancel``: a queued job is cancelled at once; a running one is
  stopped, and the reply waits until it has (as ``semctl cancel``).
* ``POST /jobs/ID/retry``: a FAILED or CANCELLED job is queued again with a fresh
  attempt budget; ``dependents`` set: also the jobs cancelled because it failed.

A job that cannot be cancelled or retried (it finished, it is DONE) is left as it is
and the flash says why, in the supervisor's words.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semantica.control.render import payload_for_screen, waiting
from semantica.control.terminal import error_label
from semantica.control.web.access import act, fragment, render, session_of, web_of
from semantica.control.web.live import redraw
from semantica.control.web.live_log import ID_MAX, log_live
from semantica.control.web.views import as_json, duration, log_line, when
from semantica.errors import NoSuchJob, SemanticaError
from semantica.models import TERMINAL_STATES, Job, JobState

#: The most lines of a log the page holds when it is drawn (``semctl logs`` has all).
LOG_SHOWN = 5000
#: How often a running job's details are read again (for its progress).
RUNNING_S = 2.0


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def details(job: Job) -> dict[str, Any]:
    """What the details of a job's page show, beyond the job itself."""
    running = job.state == JobState.RUNNING
    return {
        "job": job,
        "problem": "",
        "error_label": error_label(job),
        "waiting": waiting(job, when) if job.state == JobState.QUEUED else "",
        "waited": _seconds(job.created_at, job.started_at),
        "took": _seconds(job.started_at, job.finished_at),
        "running_for": _seconds(job.started_at, datetime.now(UTC)) if running else None,
        "payload": as_json(
            payload_for_screen(job.type, job.payload, f"semctl show {job.id} --json")
        ),
        "result": None if job.result is None else as_json(job.result),
        "more_dependents": job.dependents_count - len(job.dependents or ()),
        "requires": [
            what
            for what, on in (("AC power", job.require_charging), ("an idle CPU", job.require_idle))
            if on
        ],
        "running": running,
        "can_cancel": job.state in (JobState.QUEUED, JobState.RUNNING),
        "can_retry": job.state in (JobState.FAILED, JobState.CANCELLED),
        "timeout": duration(job.timeout) if job.timeout is not None else "",
        "backoff": duration(job.backoff) if job.backoff is not None else "",
    }


async def job_page(request: Request) -> Response:
    session = session_of(request)
    job_id: int = request.path_params["job_id"]
    client = web_of(request).client
    context: dict[str, Any] = {
        "job_id": job_id,
        "job": None,
        "problem": "",
        "back": request.url.path,
    }
    status = 200
    try:
        if not 1 <= job_id <= ID_MAX:
            raise NoSuchJob(f"no job {job_id}")
        job = await client.get(job_id)
        lines = await client.logs(job_id)
    except NoSuchJob:
        context["problem"] = f"no job {job_id}"
        status = 404
    except SemanticaError as exc:
        context["problem"] = exc.message
    else:
        shown = lines[-LOG_SHOWN:]
        context.update(details(job))
        context["log"] = "".join(log_line(line) + "\n" for line in shown)
        context["log_earlier"] = len(lines) - len(shown)
        context["log_count"] = len(lines)
        context["following"] = job.state not in TERMINAL_STATES
    return render(request, "job.html", session, status_code=status, page="jobs", **context)


async def job_live(request: Request) -> Response:
    """The details again after each change to jobs (and while it runs, every RUNNING_S)."""
    session = session_of(request)
    job_id: int = request.path_params["job_id"]
    web = web_of(request)
    base = {"job_id": job_id, "csrf": session.csrf, "back": f"/jobs/{job_id}"}

    last: Job | None = None  # as last read: kept on the page while the supervisor is away

    async def draw() -> str:
        nonlocal last
        try:
            job = await web.client.get(job_id)
        except NoSuchJob:
            last = None
            return fragment(request, "_job.html", **base, job=None, problem=f"no job {job_id}")
        except SemanticaError as exc:
            if last is None:
                return fragment(request, "_job.html", **base, job=None, problem=exc.message)
            # The job as last read, under the problem; no buttons: they could not work.
            kept = details(last) | {"problem": exc.message, "can_cancel": False, "can_retry": False}
            return fragment(request, "_job.html", **base, **kept)
        last = job
        return fragment(request, "_job.html", **base, **details(job))

    def every() -> float | None:  # a running job's progress is no event: read it again
        return RUNNING_S if last is not None and last.state == JobState.RUNNING else None

    if not 1 <= job_id <= ID_MAX:
        return Response(f"no job {job_id}\n", status_code=404, media_type="text/plain")
    return redraw(web.changes, draw, every=every)


def _job_id(request: Request) -> int:
    """The job an action names (NoSuchJob for an id no job can have)."""
    job_id: int = request.path_params["job_id"]
    if not 1 <= job_id <= ID_MAX:
        raise NoSuchJob(f"no job {job_id}")
    return job_id


async def cancel(request: Request) -> Response:
    async def do(form: FormData) -> str:
        job_id = _job_id(request)
        (outcome,) = await web_of(request).client.cancel(job_id)
        if outcome.state == JobState.CANCELLED and outcome.message in ("cancelled", "stopped"):
            return f"Cancelled job {job_id}"
        raise SemanticaError(f"Job {job_id} was not cancelled: {outcome.message}")

    return await act(request, f"/jobs/{request.path_params['job_id']}", do)


async def retry(request: Request) -> Response:
    async def do(form: FormData) -> str:
        job_id = _job_id(request)
        dependents = form.get("dependents") not in (None, "")
        await web_of(request).client.retry(job_id, dependents=dependents)
        also = ", and the jobs cancelled because it failed" if dependents else ""
        return f"Job {job_id} queued again (attempt budget reset){also}"

    return await act(request, f"/jobs/{request.path_params['job_id']}", do)


ROUTES = [
    Route("/jobs/{job_id:int}", job_page, methods=["GET"]),
    Route("/live/job/{job_id:int}", job_live, methods=["GET"]),
    Route("/jobs/{job_id:int}/cancel", cancel, methods=["POST"]),
    Route("/jobs/{job_id:int}/retry", retry, methods=["POST"]),
    Route("/live/log/{job_id:int}", log_live, methods=["GET"]),
]
