"""The schedules page in a real browser: "Run now" makes the schedule's job.

The button says what it did ("Schedule nightly made job N"), and the schedule's row
shows that job as its last run, its state following the job live to DONE.
"""

from __future__ import annotations

from browserkit import Browser, click, element, login, read, shot, text, wait_for
from harness import Daemon
from webkit import WebView


def test_run_now_makes_the_schedules_job(daemon: Daemon, web: WebView, browser: Browser) -> None:
    c = daemon.client()
    c.schedule(
        "nightly", "exec", {"argv": ["true"]}, cron="0 3 * * *", tz="Europe/Berlin", queue="ops"
    )
    c.schedule("cleanup", "exec", {"argv": ["true"]}, every="15m", paused=True)
    c.schedule("digest", "NOOP", None, cron="30 7 * * 1-5", tz="UTC", queue="mail")
    login(browser, web.url)
    browser.find_element("link text", "Schedules").click()
    element(browser, "schedules-table")
    assert text(browser, "schedule-row-nightly", '[data-testid="schedule-last"]') == "-"

    click(browser, "schedule-row-nightly", '[data-testid="schedule-run"]')
    flash = element(browser, "flash").text
    assert flash.startswith("Schedule nightly made job "), flash
    job = int(flash.rsplit(" ", 1)[1])
    assert browser.path() == "/schedules"
    last = wait_for(
        browser,
        lambda d: (
            (seen := read(d, "schedule-row-nightly", '[data-testid="schedule-last"]'))
            and "DONE" in seen.text
            and seen
        ),
        message=f"job {job} DONE as the last run",
    )
    assert f"job {job}" in last.text
    assert "manual" in last.text
    shot(browser, "schedules")

    shown = daemon.semctl("show", str(job), "--json").json()
    assert (shown["queue"], shown["state"]) == ("ops", "DONE")
    assert browser.console_errors() == []
