"""A job's page in ``semctl web``, over HTTP: its fields, its live log, cancel and retry.

A real supervisor, a real ``semctl web``, an HTTP client (webkit.py) and an event-stream
reader (sse.py). Jobs that must wait do so on a file the test creates: no sleeps here.
"""

from __future__ import annotations

import html
from pathlib import Path

from harness import Daemon
from sse import open_events
from webkit import WebView

from semantica.models import JobState

HOSTILE = "<img src=x onerror=alert(1)>"


def gated(gate: Path, before: str, after: str) -> list[str]:
    """An exec job's argv: print ``before``, wait until ``gate`` exists, print ``after``."""
    script = f"{before}; while [ ! -e {gate} ]; do sleep 0.02; done; {after}"
    return ["sh", "-c", script]


def test_a_finished_job_shows_every_field_as_text(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    job = client.enqueue(
        "ADD", {"a": 2, "b": 3, "note": HOSTILE}, subject=HOSTILE, priority=7, queue="sums"
    )
    client.wait(job.id, timeout=30)
    page = web.session().get(f"/jobs/{job.id}")
    assert page.status == 200
    text = page.text
    assert f'data-testid="field-id">{job.id}<' in text
    assert 'data-testid="field-type">ADD<' in text
    assert ">sums</a>" in text
    assert 'data-testid="field-priority">7<' in text
    assert 'data-testid="field-attempts">1 of 3<' in text
    assert 'data-testid="field-finished"' in text and "took" in text
    assert '<span class="state done" data-testid="job-state">DONE</span>' in text
    assert html.escape(HOSTILE, quote=False) in text and HOSTILE not in text
    assert "&#34;sum&#34;: 5" in text  # the result, as JSON text
    assert "&#34;note&#34;" in text  # the payload
    assert "adding" in text  # its log, drawn with the page
    assert "data-follow" not in text  # a finished job's log does not follow
    assert 'data-testid="cancel"' not in text and 'data-testid="retry"' not in text


def test_a_failed_job_shows_its_error_and_can_be_retried(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    job = client.enqueue("FAIL", {"message": f"bad {HOSTILE} \x1b[31mred"}, max_attempts=1)
    client.wait(job.id, timeout=30)
    user = web.session()
    page = user.get(f"/jobs/{job.id}").text
    assert "<dt>error</dt>" in page
    assert "exception: " in page and "\\x1b[31mred" in page  # the escape shown, not run
    assert "&lt;img src=x" in page and HOSTILE not in page
    assert 'data-testid="retry"' in page and 'data-testid="cancel"' not in page
    reply = user.post(f"/jobs/{job.id}/retry", {"back": f"/jobs/{job.id}"})
    assert (reply.status, reply.location) == (303, f"/jobs/{job.id}")
    after = user.get(f"/jobs/{job.id}").text
    assert f"Job {job.id} queued again (attempt budget reset)" in after
    again = client.wait(job.id, timeout=30)
    assert again.state == JobState.FAILED and again.attempts == 1  # a fresh budget, spent


def test_a_job_that_cannot_be_retried_is_left_as_it_is(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    job = client.enqueue("NOOP")
    client.wait(job.id, timeout=30)
    user = web.session()
    user.get(f"/jobs/{job.id}")
    reply = user.post(f"/jobs/{job.id}/retry", {"back": f"/jobs/{job.id}"})
    assert reply.status == 303
    page = user.get(f"/jobs/{job.id}").text
    assert 'class="flash error"' in page and "DONE" in page
    assert client.get(job.id).state == JobState.DONE and client.get(job.id).attempts == 1


def test_a_running_job_can_be_cancelled_from_its_page(
    web: WebView, daemon: Daemon, tmp_path: Path
) -> None:
    client = daemon.client()
    gate = tmp_path / "never"
    job = client.enqueue("exec", {"argv": gated(gate, "echo started", "echo never")})
    user = web.session()
    with open_events(user, f"/live/log/{job.id}") as log:
        first = log.next()  # the job runs once it wrote its first line
        assert first is not None and first.data == "started"
    page = user.get(f"/jobs/{job.id}").text
    assert "RUNNING" in page and 'data-testid="field-worker">pid ' in page
    assert f'data-follow="/live/log/{job.id}?after=1"' in page
    assert "Stop and cancel" in page
    reply = user.post(f"/jobs/{job.id}/cancel", {"back": f"/jobs/{job.id}"})
    assert (reply.status, reply.location) == (303, f"/jobs/{job.id}")
    assert client.get(job.id).state == JobState.CANCELLED  # the reply waited for the stop
    after = user.get(f"/jobs/{job.id}").text
    assert f"Cancelled job {job.id}" in after and "CANCELLED" in after
    assert "<dt>error</dt>" in after and "cancelled while running" in after
    again = user.post(f"/jobs/{job.id}/cancel", {"back": f"/jobs/{job.id}"})
    assert again.status == 303
    assert "was not cancelled: already finished (CANCELLED)" in user.get(f"/jobs/{job.id}").text


def test_a_queued_job_is_cancelled_then_retried_with_its_dependents(
    web: WebView, daemon: Daemon
) -> None:
    client = daemon.client()
    first = client.enqueue("NOOP", delay=3600)
    then = client.enqueue("NOOP", after=[first.id])
    user = web.session()
    page = user.get(f"/jobs/{first.id}").text
    assert "its start time" in page  # what it waits for
    assert f'<a href="/jobs/{then.id}">job {then.id}</a>' in page  # its dependent
    assert f'<a href="/jobs/{first.id}">job {first.id}</a>' in user.get(f"/jobs/{then.id}").text
    user.post(f"/jobs/{first.id}/cancel", {"back": f"/jobs/{first.id}"})
    assert client.get(first.id).state == JobState.CANCELLED
    assert client.get(then.id).state == JobState.CANCELLED  # dependency_failed
    assert 'data-testid="retry-dependents"' in user.get(f"/jobs/{first.id}").text
    user.post(f"/jobs/{first.id}/retry", {"back": f"/jobs/{first.id}", "dependents": "1"})
    assert "and the jobs cancelled because it failed" in user.get(f"/jobs/{first.id}").text
    assert client.wait(then.id, timeout=30).state == JobState.DONE  # back, and it ran


def test_the_log_follows_live_without_escapes_and_ends_with_the_job(
    web: WebView, daemon: Daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    argv = gated(gate, r"printf '\033[31mred\033[0m <b>bold</b>\n'", "echo second; echo third")
    job = daemon.client().enqueue("exec", {"argv": argv})
    user = web.session()
    with open_events(user, f"/live/log/{job.id}") as log:
        assert log.status == 200 and log.headers["content-type"].startswith("text/event-stream")
        first = log.next()
        assert first is not None
        assert (first.data, first.id) == ("red <b>bold</b>", "1")  # ANSI gone; text for the page
        gate.touch()
        rest = log.rest()
    lines = [line for event in rest if event.name == "message" for line in event.data.split("\n")]
    assert lines == ["second", "third"]
    assert rest[-1].name == "end"
    assert [event.id for event in rest if event.name == "message"][-1] == "3"
    # A reconnect says how many lines it has (EventSource sends Last-Event-ID): the rest only.
    with open_events(user, f"/live/log/{job.id}", **{"Last-Event-ID": "1"}) as again:
        events = again.rest()
    assert [e.data for e in events if e.name == "message"] == ["second\nthird"]
    assert events[-1].name == "end"
    # The page of the finished job has every line, as text.
    page = user.get(f"/jobs/{job.id}").text
    assert "red &lt;b&gt;bold&lt;/b&gt;\nsecond\nthird\n</pre>" in page
    assert "\x1b" not in page


def test_a_job_that_does_not_exist(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    for path in ("/jobs/987654", "/jobs/99999999999999999999999"):
        page = user.get(path)
        assert page.status == 404 and "no job " in page.text, path
    assert user.get("/jobs/abc").status == 404
    assert user.get("/live/log/987654").status == 404
    user.get("/jobs")
    reply = user.post("/jobs/987654/cancel", {"back": "/jobs"})
    assert (reply.status, reply.location) == (303, "/jobs")
    assert 'class="flash error"' in user.get("/jobs").text
    assert web.session(login=False).get("/live/log/1").status == 401


def test_the_details_redraw_when_the_job_changes(web: WebView, daemon: Daemon) -> None:
    client = daemon.client()
    job = client.enqueue("NOOP", delay=3600)
    user = web.session()
    assert f'data-live="/live/job/{job.id}"' in user.get(f"/jobs/{job.id}").text
    with open_events(user, f"/live/job/{job.id}") as details:
        first = details.next()
        assert first is not None and 'data-testid="job-state">QUEUED<' in first.data
        assert f'name="csrf" value="{user.csrf}"' in first.data  # its buttons work
        client.cancel(job.id)
        second = details.next()
        assert second is not None and 'data-testid="job-state">CANCELLED<' in second.data
        assert 'data-testid="retry"' in second.data


def test_the_details_stay_while_the_supervisor_is_away(web: WebView, daemon: Daemon) -> None:
    # Down, the page says so above the job as last read (a page of nothing but "no
    # supervisor at ..." lost what the reader was looking at); its buttons, which could
    # not work, are left out until the supervisor is back.
    client = daemon.client()
    job = client.enqueue("NOOP", delay=3600, subject="kept")
    user = web.session()
    with open_events(user, f"/live/job/{job.id}") as details:
        first = details.next()
        assert first is not None and 'data-testid="cancel"' in first.data
        daemon.stop()
        while (event := details.next()) is not None and "no supervisor at" not in event.data:
            pass
        assert event is not None, "the stream ended"
        assert 'data-testid="job-state">QUEUED<' in event.data
        assert 'data-testid="field-subject" class="subject">kept<' in event.data
        assert 'data-testid="cancel"' not in event.data
