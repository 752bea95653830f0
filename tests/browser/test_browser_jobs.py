"""The jobs page in a real browser: it follows the supervisor without a reload.

A job enqueued with ``semctl`` shows up on an open jobs page, and its state changes
in place; the page is never reloaded (a mark left in the page's window survives).
"""

from __future__ import annotations

from browserkit import Browser, address, element, login, read, wait_for
from harness import Daemon
from webkit import WebView


def _mark(browser: Browser) -> None:
    """Leave a mark in the page's window: a reload would wipe it."""
    browser.execute_script("window.__semantica_mark = 'still here'")


def _not_reloaded(browser: Browser) -> bool:
    return browser.execute_script("return window.__semantica_mark") == "still here"


def test_a_job_enqueued_with_semctl_appears_on_the_jobs_page_without_a_reload(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    login(browser, web.url)
    browser.get(address(web.port, "/jobs"))
    element(browser, "jobs-table")
    _mark(browser)

    enqueued = daemon.semctl(
        "enqueue", "WORK", "--subject", "report-42", "--payload", '{"seconds": 0.2}'
    )
    assert enqueued.code == 0, enqueued.err
    job = int(enqueued.out)

    row = wait_for(browser, lambda d: read(d, f"job-row-{job}"), message=f"job {job} listed")
    assert "report-42" in row.text
    assert "WORK" in row.text
    wait_for(
        browser,
        lambda d: (
            (seen := read(d, f"job-row-{job}", '[data-testid="job-state"]')) and seen.text == "DONE"
        ),
        message=f"job {job} DONE on the page",
    )
    assert _not_reloaded(browser)
    assert browser.console_errors() == []
    assert browser.dialogs() == []
