"""Attacks only a browser makes: another site's page, and a rebound name.

* A page of another site on this machine (another port of 127.0.0.1: another origin,
  but the same site, so the SameSite=Strict cookie is sent along) cannot read the
  view (no CORS) and its forged form is refused (its Origin, no CSRF token): the
  session goes on.
* DNS rebinding: a name of another site that now resolves to 127.0.0.1 reaches the
  view with its own ``Host``, which gets 400; the login code is not spent on it.

The same refusals asked over plain HTTP are in tests/integration/test_web_access.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from browserkit import Browser, address, login, site, wait_for
from webkit import WebView

EVIL_PAGE = """<!doctype html>
<title>another site</title>
<form id="forged" method="post" action="http://127.0.0.1:{port}/logout">
  <input name="csrf" value="a-guess">
</form>
<script src="evil.js"></script>
"""

# Try to read the view with the user's cookie; say in the title what came of it.
EVIL_SCRIPT = """
fetch("http://127.0.0.1:{port}/jobs", {{credentials: "include"}})
  .then(r => r.text())
  .then(t => {{ document.title = "read " + t.length + " characters"; }},
        () => {{ document.title = "blocked"; }});
"""


def test_a_page_of_another_site_can_neither_read_nor_act(
    web: WebView, browser: Browser, short_tmp: Path
) -> None:
    login(browser, web.url)
    files = {
        "index.html": EVIL_PAGE.format(port=web.port),
        "evil.js": EVIL_SCRIPT.format(port=web.port),
    }
    with site(short_tmp / "evil", files) as evil:
        browser.get(f"http://127.0.0.1:{evil}/")
        wait_for(browser, lambda d: d.title != "another site", message="the read to end")
        assert browser.title == "blocked"

        browser.execute_script("document.getElementById('forged').submit()")
        wait_for(
            browser,
            lambda d: d.current_url == address(web.port, "/logout"),
            message="the forged form to be answered",
        )
        assert "refused" in browser.find_element("tag name", "body").text

    # Nothing was done: still logged in.
    browser.get(address(web.port, "/jobs"))
    assert browser.path() == "/jobs"


def test_a_rebound_name_is_refused_and_does_not_spend_the_code(
    web: WebView, make_browser: Callable[..., Browser]
) -> None:
    browser = make_browser("--host-resolver-rules=MAP evil.example 127.0.0.1")
    browser.get(f"http://evil.example:{web.port}/login?code={web.code}")
    assert "unknown Host" in browser.find_element("tag name", "body").text
    assert browser.get_cookies() == []
    browser.get(f"http://evil.example:{web.port}/static/app.js")
    assert "unknown Host" in browser.find_element("tag name", "body").text

    login(browser, web.url)  # the code is still good on the view's own address
    browser.get(f"http://evil.example:{web.port}/jobs")
    assert "unknown Host" in browser.find_element("tag name", "body").text
