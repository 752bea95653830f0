"""``semctl web``'s front door, over plain HTTP: who gets in, and what is refused.

A real supervisor, a real ``semctl web``, an HTTP client (tests/integration/webkit.py).
The same checks in a real browser are in tests/browser/.
"""

from __future__ import annotations

import socket
import subprocess

from harness import SEMCTL, Daemon
from webkit import WebView


def test_the_login_url_works_once(web: WebView) -> None:
    first = web.session()  # logs in with the code
    assert first.get("/").status == 200
    again = web.session(login=False)
    reply = again.get(f"/login?code={web.code}")
    assert reply.status == 401
    assert "used already or has expired" in reply.text
    assert "semantica_session" not in again.cookies
    assert again.get("/").status == 303


def test_without_a_session_nothing_is_shown_or_done(web: WebView, daemon: Daemon) -> None:
    stranger = web.session(login=False)
    page = stranger.get("/jobs")
    assert (page.status, page.location) == (303, "/login?next=%2Fjobs")
    assert stranger.get("/live/jobs").status == 401
    assert stranger.get("/live/dashboard").status == 401
    assert stranger.post("/logout", {"csrf": "x"}, csrf=False).status == 401
    forged = web.session(login=False)
    forged.cookies["semantica_session"] = "made-up"
    assert forged.get("/").status == 303


def test_a_foreign_host_is_refused_even_with_a_session(web: WebView) -> None:
    """DNS rebinding: a page of evil.example that resolves to 127.0.0.1 sends its own Host."""
    user = web.session()
    for host in ("evil.example", f"evil.example:{web.port}", "127.0.0.1.evil.example"):
        reply = user.get("/jobs", Host=host)
        assert reply.status == 400, host
        assert "unknown Host" in reply.text
        assert "<table" not in reply.text
    assert user.get("/jobs", Host=f"localhost:{web.port}").status == 200


def test_an_action_without_its_csrf_token_is_refused(web: WebView) -> None:
    user = web.session()
    user.get("/")
    assert user.post("/logout", csrf=False).status == 403
    assert user.post("/logout", {"csrf": "not-the-token"}, csrf=False).status == 403
    other_site = user.post("/logout", Origin="http://evil.example")
    assert other_site.status == 403
    assert user.get("/").status == 200  # still logged in: nothing was done
    out = user.post("/logout")
    assert (out.status, out.location) == (303, "/login")
    assert user.get("/").status == 303


def test_every_response_carries_the_security_headers(web: WebView) -> None:
    reply = web.session(login=False).get(f"/login?code={web.code}")
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    user = web.session(login=False)
    user.cookies["semantica_session"] = reply.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    for path in ("/", "/jobs", "/login", "/static/app.js"):
        headers = user.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    assert user.get("/jobs").headers["cache-control"] == "no-store"


def test_the_supervisors_token_logs_in_too(web: WebView, daemon: Daemon) -> None:
    token = (daemon.home / "token").read_text().strip()
    wrong = web.session(login=False).post("/login", {"token": "nope"}, csrf=False)
    assert wrong.status == 401
    user = web.session(login=False)
    reply = user.post("/login", {"token": token}, csrf=False)
    assert (reply.status, reply.location) == (303, "/")
    assert user.get("/jobs").status == 200


def test_job_text_is_shown_as_text(web: WebView, daemon: Daemon) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    job = daemon.client().enqueue("exec", {"argv": ["true"]}, subject=hostile)
    page = web.session().get("/jobs").text
    assert f'data-testid="job-row-{job.id}"' in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert hostile not in page


def test_bad_addresses_are_one_line_errors(daemon: Daemon) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    with taken:
        for addr, says in [
            ("nonsense", "--addr must be HOST:PORT"),
            ("127.0.0.1:99999", "0-65535"),
            ("example.com:80", "an IP address or localhost"),
            (f"127.0.0.1:{port}", "cannot listen on"),
        ]:
            run = subprocess.run(
                [SEMCTL, "web", "--addr", addr],
                env=daemon.env(),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert run.returncode == 2, (addr, run)
            assert says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
            assert run.stdout == ""


def test_it_starts_without_a_supervisor_and_says_so(daemon: Daemon) -> None:
    daemon.stop()
    view = WebView(daemon)
    view.start()
    try:
        page = view.session().get("/jobs")
        assert page.status == 200
        assert "no supervisor at" in page.text
        daemon.start()
        user = view.session(login=False)
        token = (daemon.home / "token").read_text().strip()
        assert user.post("/login", {"token": token}, csrf=False).status == 303
        job = daemon.client().enqueue("exec", {"argv": ["true"]})
        assert f'data-testid="job-row-{job.id}"' in user.get("/jobs").text
    finally:
        assert view.stop() == 0


def test_without_a_supervisor_no_list_claims_to_be_empty(daemon: Daemon) -> None:
    # "No jobs." or "No queues yet" under "no supervisor at ..." would say there are none,
    # when they could not be read.
    daemon.stop()
    view = WebView(daemon)
    view.start()
    try:
        user = view.session()
        for path, empty in [
            ("/jobs", "No jobs"),
            ("/jobs?state=FAILED", "No jobs"),
            ("/queues", "No queues yet"),
            ("/schedules", 'data-testid="no-schedules"'),
        ]:
            page = user.get(path)
            assert "no supervisor at" in page.text and empty not in page.text, (path, page.text)
            live = "/live" + path
            fragment = user.live(live)
            assert "no supervisor at" in fragment and empty not in fragment, (live, fragment)
    finally:
        assert view.stop() == 0


def test_a_bookmarked_page_opens_after_the_login(web: WebView, daemon: Daemon) -> None:
    """A page asked for without a session (a bookmark; semctl web restarted) comes back
    once the token is pasted, and never another site's."""
    token = (daemon.home / "token").read_text().strip()
    user = web.session(login=False)
    bounced = user.get("/jobs?state=FAILED")
    assert bounced.location == "/login?next=%2Fjobs%3Fstate%3DFAILED"
    form = user.get(bounced.location)
    assert 'name="next" value="/jobs?state=FAILED"' in form.text
    reply = user.post("/login", {"token": token, "next": "/jobs?state=FAILED"}, csrf=False)
    assert (reply.status, reply.location) == (303, "/jobs?state=FAILED")
    for foreign in (
        "//evil.example/",
        "/\\evil.example",
        "http://evil.example/",
        "/x\r\nSet-Cookie: a=b",
    ):
        other = web.session(login=False)
        reply = other.post("/login", {"token": token, "next": foreign}, csrf=False)
        assert (reply.status, reply.location) == (303, "/"), foreign


def test_an_unknown_address_is_a_page_with_the_way_back(web: WebView) -> None:
    user = web.session()
    page = user.get("/nothing/here")
    assert page.status == 404
    assert "There is no page at /nothing/here." in page.text and 'href="/jobs"' in page.text
    stranger = web.session(login=False)
    assert stranger.get("/nothing/here").status == 404  # (no page for those not logged in)
    assert "href=" not in stranger.get("/nothing/here").text
