"""What the web view refuses, asked over plain HTTP (a browser cannot forge these).

* A foreign ``Host`` (DNS rebinding: another site's page whose name now points at
  127.0.0.1) gets 400 and nothing else, even with a valid session or login code.
* No session: a page redirects to ``/login``; a live stream or an action gets 401.
* A POST without the session's CSRF token, or from another ``Origin``, gets 403
  and changes nothing.
* Every response carries the security headers.
"""

from __future__ import annotations

from browserkit import WebView, csrf_of, http_login, request, session_cookie

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def test_a_foreign_host_is_refused_with_or_without_a_session(web: WebView) -> None:
    for host in (
        "evil.example",
        f"evil.example:{web.port}",
        "127.0.0.2",
        f"127.0.0.1:{web.port + 1}",
    ):
        # Even the login code is not spent on a foreign Host.
        reply = request(web.port, "GET", f"/login?code={web.code}", host=host)
        assert reply.status == 400, (host, reply.status)
        assert "unknown Host" in reply.body
        assert session_cookie(reply) is None

    cookie = http_login(web)
    for path in ("/", "/jobs", "/live/jobs", "/static/app.js"):
        reply = request(web.port, "GET", path, host="evil.example", cookie=cookie)
        assert reply.status == 400, (path, reply.status)
        assert "semantica" not in reply.body.lower()
    reply = request(web.port, "POST", "/logout", host="evil.example", cookie=cookie, form={})
    assert reply.status == 400

    # The names a browser on this machine uses are fine.
    for host in (f"127.0.0.1:{web.port}", f"localhost:{web.port}", f"[::1]:{web.port}"):
        assert request(web.port, "GET", "/jobs", host=host, cookie=cookie).status == 200, host


def test_without_a_session_pages_redirect_and_the_rest_is_refused(web: WebView) -> None:
    for path in ("/", "/jobs", "/jobs?state=QUEUED"):
        reply = request(web.port, "GET", path)
        assert reply.status == 303, path
        assert reply.header("Location") == "/login"
    assert request(web.port, "GET", "/live/jobs").status == 401
    assert request(web.port, "GET", "/live/dashboard").status == 401
    assert request(web.port, "POST", "/logout", form={"csrf": "x"}).status == 401
    # A made-up session is no session.
    assert request(web.port, "GET", "/jobs", cookie="made-up").status == 303
    # The login page itself and the static files need none.
    assert request(web.port, "GET", "/login").status == 200
    assert request(web.port, "GET", "/static/app.js").status == 200
    # A wrong code is refused, and sets no cookie.
    reply = request(web.port, "GET", "/login?code=wrong")
    assert reply.status == 401
    assert session_cookie(reply) is None


def test_a_post_without_its_csrf_token_is_refused_and_changes_nothing(web: WebView) -> None:
    cookie = http_login(web)
    page = request(web.port, "GET", "/jobs", cookie=cookie)
    token = csrf_of(page.body)
    origin = {"Origin": f"http://127.0.0.1:{web.port}"}

    no_origin: dict[str, str] = {}
    refused = [
        (None, no_origin),  # no form at all
        ({}, no_origin),  # no token
        ({"csrf": ""}, no_origin),
        ({"csrf": token[:-1]}, no_origin),
        ({"csrf": token + "x"}, no_origin),
        ({"csrf": token}, {"Origin": "http://evil.example"}),
        ({"csrf": token}, {"Origin": "null"}),
    ]
    for form, headers in refused:
        reply = request(web.port, "POST", "/logout", cookie=cookie, form=form, headers=headers)
        assert reply.status == 403, (form, headers, reply.status)
        # Nothing done: the session still works.
        assert request(web.port, "GET", "/jobs", cookie=cookie).status == 200, (form, headers)

    # The same request with its token (and its own Origin) does what it says.
    reply = request(
        web.port, "POST", "/logout", cookie=cookie, form={"csrf": token}, headers=origin
    )
    assert reply.status == 303
    assert request(web.port, "GET", "/jobs", cookie=cookie).status == 303


def test_every_response_carries_the_security_headers(web: WebView) -> None:
    cookie = http_login(web)
    replies = {
        "login": request(web.port, "GET", "/login"),
        "refused": request(web.port, "GET", "/login?code=wrong"),
        "page": request(web.port, "GET", "/jobs", cookie=cookie),
        "redirect": request(web.port, "GET", "/jobs"),
        "static": request(web.port, "GET", "/static/app.js"),
        "missing": request(web.port, "GET", "/no-such-page", cookie=cookie),
        "foreign host": request(web.port, "GET", "/", host="evil.example"),
    }
    for name, reply in replies.items():
        assert reply.header("Content-Security-Policy") == CSP, name
        assert reply.header("X-Content-Type-Options") == "nosniff", name
        # Either keeps the login URL (its code) from other sites; "no-referrer" also makes
        # the browser send "Origin: null" with the view's own forms (see the login tests).
        assert reply.header("Referrer-Policy") in ("same-origin", "no-referrer"), name
        assert reply.header("X-Frame-Options") == "DENY", name
    for name in ("login", "page", "refused"):
        assert replies[name].header("Cache-Control") == "no-store", name
