"""The web view's queues page over HTTP: what it shows, its actions, and what it refuses.

A real supervisor, a real ``semctl web``, an HTTP client (tests/integration/webkit.py).
Each action is checked as a user sees it (the flash, the page after) and through the
client (what the supervisor holds); a bad input changes nothing.
"""

from __future__ import annotations

import html

from harness import Daemon
from webkit import HttpSession, WebView

SLEEP = {"argv": ["sleep", "30"]}


def _queue(daemon: Daemon, name: str) -> tuple[bool, int]:
    infos = {q.name: q for q in daemon.client().queues()}
    return infos[name].paused, infos[name].limit


def _row(page: str, name: str) -> str:
    start = page.index(f'data-testid="queue-row-{name}"')
    return page[start : page.index("</tr>", start)]


def _act(user: HttpSession, path: str, data: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """POST an action from the queues page; the flashes of the page it goes back to."""
    user.get("/queues")
    reply = user.post(path, {"back": "/queues", **(data or {})})
    assert (reply.status, reply.location) == (303, "/queues"), reply
    return user.get("/queues").flashes


def test_the_page_lists_every_queue_with_counts_and_settings(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.pause("mail", create=True)
    c.limit("mail", 3)
    for _ in range(2):
        c.enqueue("exec", SLEEP, queue="mail")
    c.enqueue("exec", {"argv": ["true"]}, queue="reports")
    page = web.session().get("/queues")
    assert page.status == 200
    row = _row(page.text, "mail")
    assert ">paused<" in row and 'data-testid="queue-limit">3<' in row
    assert '<a href="/jobs?queue=mail&amp;state=QUEUED">2</a>' in row
    assert 'action="/queues/mail/resume"' in row and 'action="/queues/mail/limit"' in row
    for queue in c.queues():
        assert f'data-testid="queue-row-{queue.name}"' in page.text


def test_pause_resume_and_limit_say_what_they_did(web: WebView, daemon: Daemon) -> None:
    daemon.client().enqueue("exec", {"argv": ["true"]}, queue="mail")
    user = web.session()
    assert _act(user, "/queues/mail/pause") == [
        ("ok", "Queue mail paused: none of its jobs starts until resumed")
    ]
    assert _queue(daemon, "mail") == (True, 0)
    assert ">paused<" in _row(user.get("/queues").text, "mail")
    assert _act(user, "/queues/mail/resume") == [("ok", "Queue mail resumed")]
    assert _queue(daemon, "mail") == (False, 0)
    assert _act(user, "/queues/mail/limit", {"limit": " 4 "}) == [
        ("ok", "Queue mail: at most 4 jobs run at once")
    ]
    assert _queue(daemon, "mail") == (False, 4)
    assert 'data-testid="queue-limit">4<' in _row(user.get("/queues").text, "mail")
    assert _act(user, "/queues/mail/limit", {"limit": "0"}) == [
        ("ok", "Queue mail has no limit now")
    ]
    assert _queue(daemon, "mail") == (False, 0)


def test_a_bad_limit_is_an_error_and_changes_nothing(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.enqueue("exec", {"argv": ["true"]}, queue="mail")
    c.limit("mail", 2)
    user = web.session()
    for bad in ("", "abc", "-1", "2.5", "10001", "99999999999999999999"):
        flashes = _act(user, "/queues/mail/limit", {"limit": bad})
        assert len(flashes) == 1 and flashes[0][0] == "error", (bad, flashes)
        assert "whole number from 0 (no cap) to 10000" in flashes[0][1]
        assert "nothing changed" in flashes[0][1]
        assert _queue(daemon, "mail") == (False, 2), bad
    flashes = _act(user, "/queues/mail/limit")  # no field at all
    assert flashes[0][0] == "error"
    assert _queue(daemon, "mail") == (False, 2)


def test_a_queue_that_is_not_there_is_refused_and_not_made(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.enqueue("exec", {"argv": ["true"]}, queue="mail")
    before = {q.name for q in c.queues()}
    user = web.session()
    for action, data in [("pause", {}), ("resume", {}), ("limit", {"limit": "2"})]:
        flashes = _act(user, f"/queues/nosuch/{action}", data)
        assert len(flashes) == 1 and flashes[0][0] == "error", flashes
        assert "no queue 'nosuch'" in flashes[0][1]
    # Not a valid name at all (space, "!"): the supervisor says what a name may hold.
    flashes = _act(user, "/queues/bad%20name%21/pause")
    assert flashes[0][0] == "error" and "queue name must be" in flashes[0][1], flashes
    assert {q.name for q in c.queues()} == before
    assert _queue(daemon, "mail") == (False, 0)


def test_actions_without_a_session_or_csrf_token_are_refused(web: WebView, daemon: Daemon) -> None:
    daemon.client().enqueue("exec", {"argv": ["true"]}, queue="mail")
    stranger = web.session(login=False)
    assert stranger.get("/queues").status == 303
    assert stranger.get("/live/queues").status == 401
    for path in ("/queues/mail/pause", "/queues/mail/limit"):
        assert stranger.post(path, {"csrf": "x", "limit": "1"}, csrf=False).status == 401
    user = web.session()
    user.get("/queues")
    assert user.post("/queues/mail/pause", csrf=False).status == 403
    assert (
        user.post("/queues/mail/limit", {"csrf": "wrong", "limit": "1"}, csrf=False).status == 403
    )
    assert user.post("/queues/mail/pause", Origin="http://evil.example").status == 403
    assert _queue(daemon, "mail") == (False, 0)


def test_the_live_table_is_the_same_fragment_with_its_forms(web: WebView, daemon: Daemon) -> None:
    c = daemon.client()
    c.pause("mail", create=True)
    c.enqueue("exec", SLEEP, queue="mail")
    user = web.session()
    page = user.get("/queues").text
    assert 'data-live="/live/queues"' in page
    fragment = user.live("/live/queues")
    assert ">paused<" in _row(fragment, "mail")
    assert f'name="csrf" value="{user.csrf}"' in fragment  # its forms work when redrawn
    assert "<html" not in fragment
    assert html.escape("no cap") in fragment
