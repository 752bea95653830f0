"""The dashboard: the engine at a glance, redrawn every second from ``top``.

Every open dashboard draws from the one ``top`` reply the view asks for each second
(:class:`~semantica.control.web.live.TopFeed`), so ten open tabs cost the supervisor
what one does. It shows the workers (grouped by node on a shared store, each node
with its state and the age of its heartbeat), throughput with a chart of the last
hour (:mod:`.chart`, drawn server-side), the busiest queues, what waits and why,
the latest failures and the schedules due next: all of it from that one reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from semantica.control.web.access import fragment, render, session_of, web_of
from semantica.control.web.chart import hour_chart
from semantica.control.web.live import redraw
from semantica.control.web.schedule_rows import schedule_row
from semantica.control.web.views import waiting_text
from semantica.errors import SemanticaError
from semantica.protocol import NodeView, TopReply, WorkerTop


@dataclass
class NodeGroup:
    """The workers of one node (``node`` None: a single supervisor, or workers whose
    node the reply does not list)."""

    node: NodeView | None
    workers: list[WorkerTop]


def by_node(top: TopReply) -> list[NodeGroup]:
    """The workers grouped by node, in the reply's order of nodes (then any others);
    one group without a node when there is one node (as ``semctl top`` shows them)."""
    if len(top.nodes) < 2:
        return [NodeGroup(None, list(top.workers))]
    groups = {node.name: NodeGroup(node, []) for node in top.nodes}
    strays = NodeGroup(None, [])
    for worker in top.workers:
        groups.get(worker.node or "", strays).workers.append(worker)
    return [*groups.values(), *([strays] if strays.workers else [])]


def board(top: TopReply | SemanticaError | None) -> dict[str, Any]:
    """What the dashboard shows of a ``top`` reply (or of the error instead of one)."""
    if isinstance(top, SemanticaError):
        return {"top": None, "problem": top.message}
    if top is None:
        return {"top": None, "problem": ""}
    # (``per_minute`` is new in the protocol: a supervisor without it sends none)
    chart = hour_chart(getattr(top, "per_minute", None) or [])
    return {
        "top": top,
        "problem": "",
        "chart": chart,
        "groups": by_node(top),
        "waiting": [(job, waiting_text(job)) for job in top.waiting],
        "schedules": [schedule_row(schedule) for schedule in top.schedules],
    }


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

    return redraw(feed, draw, pause=0)


ROUTES = [
    Route("/", dashboard, methods=["GET"]),
    Route("/live/dashboard", dashboard_live, methods=["GET"]),
]
