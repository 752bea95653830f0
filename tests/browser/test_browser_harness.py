"""The harness sees what the web view's tests say never happens.

The hostile-subject tests pass when no dialog opened and the console has no error;
that proves something only if the harness does see a dialog and an error when a
page makes them. A tiny page served here (not the web view) makes both, under the
same kind of Content-Security-Policy the web view sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browserkit import Browser, by_testid, site, wait_for

CSP = "default-src 'none'; script-src 'self'"

PAGE = """<!doctype html>
<html><head><title>stand-in</title><script src="/page.js"></script></head>
<body><p data-testid="text">&lt;img src=x onerror=alert(1)&gt;</p>
<p data-testid="inline" onclick="alert('inline')">inline handler</p></body></html>
"""

SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  alert("from page.js");
  console.error("an error from page.js");
  document.querySelector('[data-testid="inline"]').click();  // refused by the CSP
  document.body.dataset.ran = "yes";
});
"""


@pytest.fixture
def stand_in(short_tmp: Path) -> Iterator[str]:
    files = {"index.html": PAGE, "page.js": SCRIPT}
    with site(short_tmp / "site", files, {"Content-Security-Policy": CSP}) as port:
        yield f"http://127.0.0.1:{port}/"


def test_the_harness_sees_dialogs_console_errors_and_csp_refusals(
    browser: Browser, stand_in: str
) -> None:
    browser.get(stand_in)
    wait_for(browser, lambda d: d.find_element("tag name", "body").get_attribute("data-ran"))

    # Escaped markup is text, as the web view's pages must show job data.
    assert browser.find_element(*by_testid("text")).text == "<img src=x onerror=alert(1)>"
    assert browser.dialogs() == ["alert(from page.js)"]
    errors = browser.console_errors()
    assert any("an error from page.js" in e for e in errors), errors
    assert any("Content Security Policy" in e for e in errors), errors
