"""Whatever a job carries is shown as text: it never runs, styles or hides anything.

A job's subject is ``<img src=x onerror=alert(1)>`` and its error holds a script tag
and terminal colour escapes. It reaches the open pages through their live updates
(a fragment put in with innerHTML, the riskiest way in) and through a reload
(the server's own page): either way the text shows as typed, no element is made of
it, no dialog opens and the console has no error (a blocked inline script, a
failed image load would be one).
"""

from __future__ import annotations

import json

from browserkit import Browser, Seen, address, element, login, read, wait_for
from harness import Daemon
from webkit import WebView

SUBJECT = "<img src=x onerror=alert(1)>"
MESSAGE = "<script>alert(2)</script> \x1b[31mred\x1b[0m <b>bold</b>"


def _as_text(seen: Seen, where: str) -> None:
    """The job's text is in ``seen`` as typed, and made no element."""
    assert "<script>alert(2)</script>" in seen.text, where
    assert "<b>bold</b>" in seen.text, where
    assert "\x1b" not in seen.text, where  # shown as a visible escape, never sent raw
    for tag in ("img", "script", "b"):
        assert tag not in seen.tags, f"a <{tag}> in {where}"


def test_a_hostile_subject_and_error_are_shown_as_text(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    login(browser, web.url)
    browser.get(address(web.port, "/jobs"))
    element(browser, "jobs-table")

    enqueued = daemon.semctl(
        "enqueue", "FAIL", "--subject", SUBJECT, "--max-attempts", "1",
        "--payload", json.dumps({"message": MESSAGE}),
    )  # fmt: skip
    assert enqueued.code == 0, enqueued.err
    job = int(enqueued.out)
    assert daemon.semctl("wait", str(job)).code != 0  # it FAILED, as meant

    def failed_row(d: Browser) -> Seen | None:
        row = read(d, f"job-row-{job}")
        return row if row is not None and "FAILED" in row.text else None

    # Through the live update (innerHTML), then through the page the server renders.
    for how in ("live", "reloaded"):
        if how == "reloaded":
            browser.refresh()
        row = wait_for(browser, failed_row, message=f"job {job} FAILED on the {how} page")
        assert SUBJECT in row.text, how
        _as_text(row, f"the {how} jobs page")
        table = read(browser, "jobs-table")
        assert table is not None
        assert not {"img", "script", "b"} & set(table.tags), how
        assert browser.dialogs() == [], how
        assert browser.console_errors() == [], how

    # The dashboard's recent failures: the same text, the same way.
    browser.get(address(web.port, "/"))
    failures = wait_for(
        browser,
        lambda d: (seen := read(d, "failures")) and "bold" in seen.text and seen,
        message="the failure on the dashboard",
    )
    _as_text(failures, "the dashboard's failures")
    assert browser.dialogs() == []
    assert browser.console_errors() == []
