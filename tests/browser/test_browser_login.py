"""Logging in to the web view in a real browser: the one-time URL, the pasted token.

The URL ``semctl web`` prints opens a session once; the same URL again is refused,
as it would be for anyone who finds it later in a shell history or a screenshot.
The session cookie is out of the page's scripts' reach (HttpOnly) and never sent
with a request another site makes (SameSite=Strict).
"""

from __future__ import annotations

from collections.abc import Callable

from browserkit import Browser, address, element, login, shot, wait_for
from harness import Daemon
from webkit import WebView

#: Where a page asked for without a session goes: the login, then back to that page.
LOGIN_THEN_JOBS = "/login?next=%2Fjobs"


def test_the_login_url_opens_a_session_once(
    web: WebView, make_browser: Callable[..., Browser]
) -> None:
    first = make_browser()
    login(first, web.url)
    cookie = first.get_cookie("semantica_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/"
    assert "semantica_session" not in first.execute_script("return document.cookie")

    # The same URL in another browser: refused, and no way in without logging in.
    second = make_browser()
    second.get(web.url)
    assert "used already or has expired" in element(second, "refused").text
    assert second.get_cookie("semantica_session") is None
    second.get(address(web.port, "/jobs"))
    wait_for(second, lambda d: d.path() == LOGIN_THEN_JOBS, message="a redirect to /login")

    # The first browser's session goes on.
    first.get(address(web.port, "/jobs"))
    assert first.path() == "/jobs"
    assert first.console_errors() == []
    # The refused login page is a 401, which the browser notes; nothing else went wrong.
    assert [e for e in second.console_errors() if "status of 401" not in e] == []


def test_a_browser_without_a_session_logs_in_with_the_pasted_token(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    browser.get(address(web.port, "/jobs"))
    wait_for(browser, lambda d: d.path() == LOGIN_THEN_JOBS, message="a redirect to /login")
    shot(browser, "login")
    page = browser.find_element("tag name", "main").text
    assert str(daemon.home / "token") in page

    browser.find_element("id", "token").send_keys("not the token")
    browser.find_element("css selector", "form[action='/login'] button").click()
    assert "not the supervisor's token" in element(browser, "refused").text
    assert browser.get_cookie("semantica_session") is None

    browser.find_element("id", "token").send_keys((daemon.home / "token").read_text().strip())
    browser.find_element("css selector", "form[action='/login'] button").click()
    # Back to the page that asked for the login.
    wait_for(browser, lambda d: d.path() == "/jobs", message="the login to land on /jobs")
    assert browser.get_cookie("semantica_session") is not None
    # The wrong token's page is a 401, which the browser notes; nothing else went wrong.
    assert [e for e in browser.console_errors() if "status of 401" not in e] == []


def test_the_log_out_button_ends_the_session(web: WebView, browser: Browser) -> None:
    # A form the page itself posts (with its CSRF token and its own Origin) is accepted:
    # the browser, not a test's hand-made request, decides what Origin it sends.
    login(browser, web.url)
    browser.find_element("css selector", "form[action='/logout'] button").click()
    wait_for(browser, lambda d: d.path() == "/login", message="the log out to land on /login")
    assert browser.get_cookie("semantica_session") is None
    browser.get(address(web.port, "/jobs"))
    wait_for(browser, lambda d: d.path() == LOGIN_THEN_JOBS, message="a redirect to /login")
    assert browser.console_errors() == []
