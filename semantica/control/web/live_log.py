"""A job's log in the browser, following live like ``tail -f``: ``GET /live/log/ID``.

Contract:

* The stream is the job's log as ``follow`` sends it (the lines so far, then new ones
  as the job writes them), each line made inert by :func:`~.views.log_line` (terminal
  escapes dropped, controls shown as escapes): the browser adds them as text.
* Each event holds the lines that came together (one line, or several joined by a
  line break) and its ``id`` is how many lines of the log have been passed so far.
  The first lines a reader already has are skipped: as many as its ``Last-Event-ID``
  header says (a reconnecting EventSource sends it), else as many as the ``after``
  query parameter says (the page rendered them). So a reconnect neither repeats nor
  loses a line, as long as the log was not cut meanwhile (a log over its cap loses
  its oldest half, and then the count is off by what was dropped).
* When the job has finished, the stream sends the ``end`` event and closes: the page
  stops following. When the supervisor goes away first, the stream closes without
  it, and the browser connects again by itself and carries on where it was.
* A job that does not exist: ``404``. A keepalive comment goes out while the job
  writes nothing, so a closed tab ends its follow within :data:`~.live.KEEPALIVE_S`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from semantica.control.async_client import AsyncClient
from semantica.control.web.access import session_of, web_of
from semantica.control.web.live import KEEPALIVE_S, Ended, Numbered, event_stream
from semantica.control.web.views import log_line
from semantica.errors import NoSuchJob, SemanticaError

#: Job ids the store can hold (an id outside them names no job).
ID_MAX = 2**63 - 1


def lines_to_skip(request: Request) -> int:
    """How many lines of the log the reader has: ``Last-Event-ID``, else ``after``."""
    for raw in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if raw:
            try:
                return max(0, int(raw))
            except ValueError:
                continue
    return 0


async def log_events(client: AsyncClient, job_id: int, skip: int) -> AsyncIterator[Numbered | None]:
    """The log's lines after the first ``skip``, in batches numbered by the lines passed;
    None to keep the stream alive; raises :class:`Ended` once the job has finished."""
    passed = 0
    try:
        async with client.follow(job_id) as follower:
            while True:
                # (A follow's reads lose nothing when cut short: see async_conn.)
                with trio.move_on_after(KEEPALIVE_S) as waited:
                    lines = await follower.next_lines()
                if waited.cancelled_caught:
                    yield None
                    continue
                if not lines:
                    break
                fresh = lines[max(0, skip - passed) :]
                passed += len(lines)
                if fresh:
                    yield Numbered("\n".join(log_line(line) for line in fresh), passed)
            finished = follower.finished is not None
    except NoSuchJob:  # deleted meanwhile: nothing more will come
        finished = True
    except SemanticaError:  # the supervisor went away: the browser will ask again
        finished = False
    if finished:
        raise Ended


async def log_live(request: Request) -> Response:
    session_of(request)
    job_id: int = request.path_params["job_id"]
    client = web_of(request).client
    if not 1 <= job_id <= ID_MAX:
        return PlainTextResponse(f"no job {job_id}\n", status_code=404)
    try:
        await client.get(job_id)
    except NoSuchJob:
        return PlainTextResponse(f"no job {job_id}\n", status_code=404)
    except SemanticaError:
        pass  # not reachable now: the stream ends at once and the browser tries again
    fragments = log_events(client, job_id, lines_to_skip(request))
    return event_stream(fragments, dedupe=False, end="ended", end_only_if_ended=True)
