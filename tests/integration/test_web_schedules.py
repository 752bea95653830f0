"""The web view's schedules pages over HTTP: the list, one schedule, and their actions.

A real supervisor, a real ``semctl web``, an HTTP client (tests/integration/webkit.py).
Each action is checked as a user sees it (the flash, the page after) and through the
client (what the supervisor holds); a bad target changes nothing.
"""

from __future__ import annotations

import html

from harness import Daemon
from webkit import HttpSession, WebView

TRUE = {"argv": ["true"]}


def _row(page: str, name: str) -> str:
    start = page.index(f'data-testid="schedule-row-{name}"')
    return html.unescape(page[start : page.index("</tr>", start)])


def _act(user: HttpSession, path: str, back: str = "/schedules") -> list[tuple[str, str]]:
    """POST an action from a schedules page; the flashes of the page it goes back to."""
    user.get(back)
    reply = user.post(path, {"back": back})
    assert (reply.status, reply.location) == (303, back), reply
    return user.get(back).flashes


def test_with_no_schedule_the_page_says_how_to_add_one(web: WebView) -> None:
    page = web.session().get("/schedules")
    assert page.status == 200
    assert 'data-testid="no-schedules"' in page.text
    assert "semctl schedule add" in page.text


def test_the_list_shows_when_next_last_and_the_job(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.schedule("nightly", "exec", TRUE, cron="0 3 * * *", tz="Europe/Berlin", queue="ops")
    c.schedule("often", "exec", TRUE, every="15m", paused=True)
    job = c.run_schedule("nightly")
    page = web.session().get("/schedules")
    nightly = _row(page.text, "nightly")
    assert "cron 0 3 * * * Europe/Berlin" in nightly
    assert ":00 CE" in nightly  # the next fire, in the schedule's zone (CET or CEST)
    assert f'href="/jobs/{job.id}">job {job.id}</a>' in nightly and "manual" in nightly
    assert "exec" in nightly and "queue ops" in nightly
    assert 'action="/schedules/nightly/pause"' in nightly
    often = _row(page.text, "often")
    assert "every 15m" in often and ">paused<" in often
    assert 'action="/schedules/often/resume"' in often


def test_pause_resume_and_run_say_what_they_did(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.schedule("nightly", "exec", TRUE, cron="0 3 * * *", tz="UTC")
    user = web.session()
    assert _act(user, "/schedules/nightly/pause") == [
        ("ok", "Schedule nightly paused: its slots make no job until resumed")
    ]
    assert c.get_schedule("nightly").paused
    flashes = _act(user, "/schedules/nightly/resume")
    assert len(flashes) == 1 and flashes[0][0] == "ok"
    assert flashes[0][1].startswith("Schedule nightly resumed: next job due ")
    assert "03:00 UTC" in flashes[0][1]
    assert not c.get_schedule("nightly").paused
    flashes = _act(user, "/schedules/nightly/run", back="/schedules/nightly")
    made = c.get_schedule("nightly").last_job_id
    assert made is not None
    assert flashes == [("ok", f"Schedule nightly made job {made}")]
    assert c.get(made).type == "exec"
    page = user.get("/schedules/nightly").text
    assert f'href="/jobs/{made}">job {made}</a>' in page  # the job, a click away


def test_a_schedule_that_is_not_there_is_refused(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.schedule("nightly", "exec", TRUE, cron="0 3 * * *")
    jobs_before = len(c.list())
    user = web.session()
    for action in ("pause", "resume", "run"):
        flashes = _act(user, f"/schedules/nosuch/{action}")
        assert len(flashes) == 1 and flashes[0][0] == "error", flashes
        assert "nosuch" in flashes[0][1]
    page = user.get("/schedules/nosuch")
    assert page.status == 404 and 'data-testid="problem"' in page.text
    assert [s.name for s in c.schedules()] == ["nightly"]
    assert not c.get_schedule("nightly").paused
    assert len(c.list()) == jobs_before


def test_a_schedules_page_shows_it_whole_with_its_runs(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.schedule(
        "tidy",
        "exec",
        {"argv": ["echo", "<img src=x onerror=alert(1)>"], "env": {"SECRET": "s3cret"}},
        every="1h",
        subject="<b>tidy</b>",
        max_attempts=2,
    )
    first, second = c.run_schedule("tidy"), c.run_schedule("tidy")
    page = web.session().get("/schedules/tidy")
    assert page.status == 200
    assert 'data-live="/live/schedules/tidy"' in page.text
    text = html.unescape(page.text)
    assert "every 1h" in text and "max attempts 2" in text
    for job in (first, second):
        assert f'href="/jobs/{job.id}">job {job.id}</a>' in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text  # shown as text
    assert "<img src=x" not in page.text and "<b>tidy" not in page.text
    assert "s3cret" not in page.text and "1 variable" in text  # an exec job's env: a count


def test_actions_without_a_session_or_csrf_token_are_refused(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.schedule("nightly", "exec", TRUE, cron="0 3 * * *")
    stranger = web.session(login=False)
    assert stranger.get("/schedules").status == 303
    assert stranger.get("/schedules/nightly").status == 303
    assert stranger.get("/live/schedules").status == 401
    for action in ("pause", "run"):
        assert (
            stranger.post(f"/schedules/nightly/{action}", {"csrf": "x"}, csrf=False).status == 401
        )
    user = web.session()
    user.get("/schedules")
    assert user.post("/schedules/nightly/run", csrf=False).status == 403
    assert user.post("/schedules/nightly/pause", Origin="http://evil.example").status == 403
    assert not c.get_schedule("nightly").paused
    assert c.get_schedule("nightly").last_job_id is None


def test_the_live_list_is_the_same_fragment_with_its_forms(web: WebView, daemon: Daemon) -> None:
    daemon.client().schedule("nightly", "exec", TRUE, cron="0 3 * * *")
    user = web.session()
    assert 'data-live="/live/schedules"' in user.get("/schedules").text
    fragment = user.live("/live/schedules")
    assert 'data-testid="schedule-row-nightly"' in fragment
    assert f'name="csrf" value="{user.csrf}"' in fragment
    one = user.live("/live/schedules/nightly")
    assert "Schedule nightly" in one and 'data-testid="schedule-runs"' in one
