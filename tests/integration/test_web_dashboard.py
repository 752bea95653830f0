"""The web view's dashboard over HTTP: what it shows of a real supervisor, live.

A real supervisor, a real ``semctl web``, an HTTP client (tests/integration/webkit.py).
(Its parts without a supervisor, the chart and the grouping by node, are in
tests/unit/test_web_dashboard_parts.py.)
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from harness import Announcements, Daemon
from webkit import WebView

from semantica.control.client import Client
from semantica.models import JobState
from semantica.protocol import TopReply


def _until(client: Client, job_id: int, state: JobState, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get(job_id).state != state:
        assert time.monotonic() < deadline, f"job {job_id} never {state}"
        time.sleep(0.05)


def _section(page: str, testid: str) -> str:
    start = page.index(f'data-testid="{testid}"')
    return html.unescape(page[start : page.index("</table>", start)])


def test_the_dashboard_shows_workers_queues_waiting_failures_and_schedules(
    web: WebView, daemon: Daemon
) -> None:
    c = daemon.client()
    running = c.enqueue("exec", {"argv": ["sleep", "30"]}, subject="long one")
    failed = c.enqueue("exec", {"argv": ["false"]}, max_attempts=1)
    c.pause("held", create=True)
    c.limit("held", 2)
    held = c.enqueue("exec", {"argv": ["true"]}, queue="held", subject="<b>held</b>")
    c.schedule("nightly", "exec", {"argv": ["true"]}, cron="0 3 * * *", tz="UTC")
    _until(c, running.id, JobState.RUNNING)
    _until(c, failed.id, JobState.FAILED)
    page = web.session().get("/")
    assert page.status == 200 and 'data-live="/live/dashboard"' in page.text
    workers = _section(page.text, "workers")
    busy = c.get(running.id).worker_pid
    assert f'data-testid="worker-{busy}"' in workers
    assert f'<a href="/jobs/{running.id}">{running.id}</a>' in workers
    queues = _section(page.text, "queues")
    row = queues[queues.index('data-testid="queue-held"') :]
    assert "paused" in row.split("</tr>")[0] and "<td>2</td>" in row.split("</tr>")[0]
    waiting = _section(page.text, "waiting")
    assert f'data-testid="waiting-{held.id}"' in waiting and "paused queue" in waiting
    assert "&lt;b&gt;held&lt;/b&gt;" in page.text and "<b>held</b>" not in page.text
    failures = _section(page.text, "failures")
    assert f'data-testid="failure-{failed.id}"' in failures
    assert c.get(failed.id).error is not None
    assert "exit" in failures.lower()
    schedules = _section(page.text, "schedules-next")
    assert 'href="/schedules/nightly"' in schedules and "03:00 UTC" in schedules
    throughput = _section(page.text, "throughput")
    assert 'data-testid="failed-60s">1<' in throughput
    assert 'data-testid="enqueued-60s">3<' in throughput
    if "per_minute" in TopReply.__struct_fields__:  # the supervisor counts by the minute
        assert 'data-testid="chart"' in page.text


def test_the_live_dashboard_follows_the_supervisor(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    first = user.live("/live/dashboard")
    assert 'data-testid="workers"' in first and "<html" not in first
    c = daemon.client()
    job = c.enqueue("exec", {"argv": ["sleep", "30"]})
    _until(c, job.id, JobState.RUNNING)
    # (the first event may be the reply of a second ago: then the next one has it)
    user.live("/live/dashboard", until=lambda part: f'href="/jobs/{job.id}"' in part)


def test_a_workers_progress_and_its_message_are_shown_as_text(
    web: WebView, daemon: Daemon, announcements: Announcements, short_tmp: Path
) -> None:
    release = short_tmp / "release"
    payload = {
        "notify": str(announcements.path),
        "release": str(release),
        "message": "<i>step</i> 3 of 4",
    }
    c = daemon.client()
    job = c.enqueue("PROGRESS", payload)
    announcements.next()
    try:
        deadline = time.monotonic() + 20
        while c.get(job.id).progress is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        page = web.session().get("/").text
        workers = page[page.index('data-testid="workers"') :].split("</table>")[0]
        assert 'value="0.5"' in workers and "50 %" in workers
        assert "&lt;i&gt;step&lt;/i&gt; 3 of 4" in workers and "<i>" not in workers
    finally:
        release.touch()


def test_without_a_supervisor_the_dashboard_says_so(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    daemon.stop()
    page = user.get("/")
    assert page.status == 200 and 'data-testid="problem"' in page.text
    assert 'data-testid="problem"' in user.live("/live/dashboard")
    stranger = web.session(login=False)
    assert stranger.get("/").status == 303
    assert stranger.get("/live/dashboard").status == 401
