"""What another user of the machine gets from the browser, and why it is of no use.

A browser keeps cookies by host, not by port: the view's session cookie for
127.0.0.1 goes to every port of 127.0.0.1, so a page that another user of the
machine serves there receives it as soon as the browser opens it (from a link, a
bookmark, or any site that sends the browser there). The view answers only its own
user on loopback, so the cookie, replayed by that other user, gets ``403``.
"""

from __future__ import annotations

import http.server
import os
import threading
from typing import Any, ClassVar

import pytest
from browserkit import Browser, login
from webkit import WebView, as_nobody


class _Catcher(http.server.BaseHTTPRequestHandler):
    """Another user's page: it keeps the cookies it is sent."""

    caught: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.caught.append(self.headers.get("Cookie") or "")
        body = b"<!doctype html><title>another user's page</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_a_cookie_caught_on_another_port_is_of_no_use_to_another_user(
    web: WebView, browser: Browser
) -> None:
    login(browser, web.url)
    handler = type("Catcher", (_Catcher,), {"caught": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        assert browser.title == "another user's page"
    finally:
        server.shutdown()
        server.server_close()
    caught = "; ".join(handler.caught)
    assert "semantica_session=" in caught  # the browser gave the view's cookie away
    session = next(c.strip() for c in caught.split(";") if "semantica_session=" in c)
    assert as_nobody(web.port, "/jobs", session) == 403
    assert as_nobody(web.port, "/live/dashboard", session) == 403
