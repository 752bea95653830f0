"""The dashboard's parts without a supervisor: the hour's chart, workers by node, the fragment.

The chart reads the supervisor's counts by the minute; a stand-in with the same fields
(``start``, ``enqueued``, ``finished``, ``failed``) feeds it here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from semantica.control.web.access import templates
from semantica.control.web.chart import (
    HEIGHT,
    LABEL_WIDTH,
    LEFT,
    WIDTH,
    hour_chart,
    nice_ceiling,
)
from semantica.control.web.pages_dashboard import board, by_node, waiting_text
from semantica.control.web.views import as_json
from semantica.models import Job, JobState, QueueInfo
from semantica.protocol import NodeView, TopReply, WorkerTop

T0 = datetime(2026, 12, 6, 16, 0, tzinfo=UTC)


@dataclass
class Minute:
    start: datetime
    enqueued: int = 0
    finished: int = 0
    failed: int = 0


def hour(**at: tuple[int, int, int]) -> list[Minute]:
    """Sixty minutes from T0, zeros but for ``m<i>=(enqueued, finished, failed)``."""
    minutes = [Minute(T0 + timedelta(minutes=i)) for i in range(60)]
    for key, (enqueued, finished, failed) in at.items():
        m = minutes[int(key[1:])]
        m.enqueued, m.finished, m.failed = enqueued, finished, failed
    return minutes


def test_the_scale_rounds_up_to_one_two_or_five() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 2, 3, 5, 6, 11, 20, 21, 99, 101, 4999)] == [
        1, 1, 2, 5, 5, 10, 20, 20, 50, 100, 200, 5000,
    ]  # fmt: skip


def test_no_minutes_no_chart_and_a_quiet_hour_an_empty_frame() -> None:
    assert hour_chart([]) is None
    quiet = hour_chart(hour())
    assert quiet is not None
    assert quiet.scale == 1 and (quiet.finished, quiet.failed, quiet.enqueued_total) == (0, 0, 0)
    assert all(c.finished_h == 0 and c.failed_h == 0 for c in quiet.columns)
    assert len(quiet.columns) == 60


def test_each_minute_is_a_column_scaled_to_the_busiest() -> None:
    chart = hour_chart(hour(m0=(3, 2, 0), m30=(7, 8, 2), m59=(1, 0, 0)))
    assert chart is not None
    assert chart.scale == 10
    assert (chart.finished, chart.failed, chart.enqueued_total) == (10, 2, 11)
    plot_h = chart.plot_bottom - chart.plot_top
    busy = chart.columns[30]
    assert busy.finished_h == round(plot_h * 0.8, 2)
    assert busy.failed_h == round(plot_h * 0.2, 2)  # drawn over the foot of the finished bar
    assert busy.failed_y == round(chart.plot_bottom - busy.failed_h, 2)
    assert "8 finished, 2 failed, 7 enqueued" in busy.title
    # The columns fill the frame, left to right, oldest first.
    assert chart.columns[0].x == LEFT
    last = chart.columns[-1]
    assert abs(last.x + last.width - WIDTH) < 0.05
    assert 0 < last.bar_w < last.width
    # The enqueued line has a point per minute, within the frame.
    points = [tuple(map(float, p.split(","))) for p in chart.enqueued.split()]
    assert len(points) == 60
    assert all(LEFT <= x <= WIDTH and chart.plot_top <= y <= chart.plot_bottom for x, y in points)
    assert points[30][1] == round(chart.plot_bottom - plot_h * 0.7, 2)
    assert chart.height == HEIGHT


def test_times_are_labelled_every_quarter_hour() -> None:
    chart = hour_chart(hour())
    assert chart is not None
    labels = [t.label for t in chart.ticks]
    expected = [(T0 + timedelta(minutes=m)).astimezone().strftime("%H:%M") for m in range(60)]
    assert labels == [label for label in expected if label.endswith((":00", ":15", ":30", ":45"))]


def test_a_quarter_hour_too_near_the_right_edge_is_not_labelled() -> None:
    # The hour from 16:02: 17:00 is its 59th minute, with no room for its label.
    start = T0 + timedelta(minutes=2)
    chart = hour_chart([Minute(start + timedelta(minutes=i)) for i in range(60)])
    assert chart is not None
    labels = [t.label for t in chart.ticks]
    quarters = [(T0 + timedelta(minutes=m)).astimezone().strftime("%H:%M") for m in (15, 30, 45)]
    assert labels == quarters
    assert all(t.x + LABEL_WIDTH <= WIDTH for t in chart.ticks)


def test_failures_beyond_the_finished_count_never_overflow_the_bar() -> None:
    chart = hour_chart(hour(m5=(0, 1, 4)))
    assert chart is not None
    column = chart.columns[5]
    assert column.failed_h <= column.finished_h


def _top(**fields: object) -> TopReply:
    base: dict[str, object] = {
        "version": "1.0",
        "uptime_s": 12.0,
        "workers": [],
        "queues": [],
        "finished_10s": 0,
        "finished_60s": 0,
        "supervisor_cpu_percent": 0.5,
        "supervisor_rss_bytes": 1 << 20,
        "failures": [],
        "waiting": [],
    }
    return TopReply(**{**base, **fields})  # type: ignore[arg-type]  # (test data)


def _node(name: str, state: str = "alive", this: bool = False) -> NodeView:
    return NodeView(
        id=1,
        name=name,
        host="box",
        pid=10,
        version="1.0",
        workers=1,
        started_at=T0,
        heartbeat_age_s=3.0,
        state=state,
        this=this,
    )


def test_workers_are_grouped_by_node_in_the_nodes_order() -> None:
    workers = [
        WorkerTop(pid=1, state="busy", node="b"),
        WorkerTop(pid=2, state="idle", node="a"),
        WorkerTop(pid=3, state="idle", node="ghost"),
    ]
    for alone in ([], [_node("a", this=True)]):
        single = by_node(_top(workers=workers, nodes=alone))
        assert len(single) == 1 and single[0].node is None and len(single[0].workers) == 3
    groups = by_node(_top(workers=workers, nodes=[_node("a", this=True), _node("b", "dead")]))
    assert [(g.node.name if g.node else None, [w.pid for w in g.workers]) for g in groups] == [
        ("a", [2]),
        ("b", [1]),
        (None, [3]),
    ]


def test_waiting_is_said_in_words() -> None:
    def job(why: str | None, on: list[int] | None = None) -> Job:
        return Job(
            id=1,
            type="t",
            queue="default",
            subject=None,
            generation=None,
            priority=0,
            state=JobState.QUEUED,
            attempts=0,
            max_attempts=3,
            created_at=T0,
            started_at=None,
            finished_at=None,
            run_after=None,
            waiting_for=why,
            waiting_on=on,
        )

    assert waiting_text(job(None)) == "next: a free worker"
    assert waiting_text(job("queue_paused")) == "paused queue"
    assert waiting_text(job("dependency", [4])) == "job 4"
    assert waiting_text(job("dependency", [4, 5, 6, 7, 8])) == "jobs 4, 5, 6 +2"


def _render(top: TopReply, minutes: list[Minute] | None = None) -> str:
    context = board(top)
    if minutes is not None:
        context["chart"] = hour_chart(minutes)
    return str(templates().get_template("_dashboard.html").render(**context))


def test_the_fragment_draws_nodes_workers_and_the_chart_as_text() -> None:
    hostile = "<img src=x onerror=alert(1)>"
    top = _top(
        workers=[
            WorkerTop(pid=41, state="busy", job=7, job_type=hostile, running_s=3.5, progress=0.25,
                      node="n1"),
        ],
        nodes=[_node("n1", this=True), _node("n2", "dead")],
        queues=[QueueInfo(name="mail", paused=True, limit=2, counts={"QUEUED": 3})],
    )  # fmt: skip
    page = _render(top, hour(m10=(5, 4, 1)))
    assert 'data-testid="node-n1"' in page and 'data-testid="node-n2"' in page
    assert "heartbeat 3 s ago" in page and "(this one)" in page
    assert 'href="/jobs/7"' in page and 'value="0.25"' in page and "25 %" in page
    assert hostile not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'data-testid="chart"' in page and "<svg" in page
    assert len(re.findall(r'<rect class="finished"', page)) == 1
    assert len(re.findall(r'<rect class="failed"', page)) == 1
    assert "4 finished, 1 failed, 5 enqueued" in page
    assert "style=" not in page and "<script" not in page  # the CSP allows neither
    assert 'data-testid="queue-mail"' in page and "paused" in page


def test_without_counts_by_the_minute_there_is_no_chart() -> None:
    page = _render(_top())
    assert 'data-testid="chart"' not in page and 'data-testid="throughput"' in page


def test_a_payload_keeps_its_lines_and_nothing_else() -> None:
    shown = as_json({"argv": ["echo", "a\nb\x1b[31m"]})
    assert shown.split("\n") == [
        "{",
        '  "argv": [',
        '    "echo",',
        '    "a\\nb\\u001b[31m"',
        "  ]",
        "}",
    ]
