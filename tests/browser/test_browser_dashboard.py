"""The dashboard in a real browser: its live parts move as the supervisor works.

A burst of quick jobs (a few failing) shows in the throughput figures, the hour's
chart (a bar in the current minute, its failed part in red) and the recent failures;
jobs started with ``semctl`` that hold their workers (until a file the test creates
exists) show in the workers table with their job, type and progress while they run,
and once they are let go, the workers are idle again and the finished count has
grown by them. The page is never reloaded: a mark left in its window survives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browserkit import Browser, address, login, read, shot, text, wait_for
from harness import Daemon
from webkit import WebView

WORKERS = 4
QUICK = 20
FAILING = 2


def _bars(browser: Browser, kind: str) -> int:
    """How many minutes of the hour's chart have a ``kind`` bar (finished, failed)."""
    return int(
        browser.execute_script(
            "return document.querySelectorAll(arguments[0]).length",
            f'[data-testid="chart"] rect.{kind}',
        )
    )


def _finished(browser: Browser) -> str | None:
    return text(browser, "finished-hour")


@pytest.mark.workers(WORKERS)
def test_the_dashboard_follows_workers_throughput_and_failures(
    daemon: Daemon, web: WebView, browser: Browser, short_tmp: Path
) -> None:
    login(browser, web.url)
    wait_for(browser, lambda d: _finished(d) == "0", message="the dashboard's figures")
    assert _bars(browser, "finished") == 0
    browser.execute_script("window.__semantica_mark = 'still here'")

    c = daemon.client()
    for n in range(QUICK):
        c.enqueue("WHO", None, subject=f"thumbnail-{n}", queue="images")
    failing = [
        c.enqueue("FAIL", {"message": "disk full"}, max_attempts=1, queue="reports").id
        for _ in range(FAILING)
    ]
    total = QUICK + FAILING
    wait_for(browser, lambda d: _finished(d) == str(total), message=f"{total} finished")
    # This minute's bar (two, if the burst straddled the turn of a minute).
    wait_for(browser, lambda d: _bars(d, "failed") >= 1, message="a failed part in the chart")
    assert 1 <= _bars(browser, "finished") <= 2
    assert text(browser, "failed-hour") == str(FAILING)
    for job in failing:
        failure = text(browser, f"failure-{job}")
        assert failure is not None and "disk full" in failure, failure

    # A job that waits for its start time, and a schedule: the dashboard says why and when.
    later = c.enqueue("exec", {"argv": ["true"]}, delay=3600, subject="reminder").id
    c.schedule("nightly", "exec", {"argv": ["true"]}, cron="0 3 * * *", queue="reports")
    waiting = wait_for(
        browser, lambda d: text(d, f"waiting-{later}"), message=f"job {later} waiting"
    )
    assert "its start time" in waiting, waiting
    wait_for(
        browser,
        lambda d: "nightly" in (text(d, "schedules-next") or ""),
        message="the schedule due next",
    )

    # Jobs run with semctl, each holding its worker until the file `release` exists.
    release = short_tmp / "release"
    payload = json.dumps({"release": str(release), "message": "rendering page 3 of 7"})
    held = []
    for n in range(WORKERS):
        enqueued = daemon.semctl(
            "enqueue", "PROGRESS", "--queue", "exports", "--subject", f"export-{n}",
            "--payload", payload,
        )  # fmt: skip
        assert enqueued.code == 0, enqueued.err
        held.append(int(enqueued.out))

    def busy_rows(d: Browser) -> list[str]:
        """The workers table's rows of workers running a PROGRESS job, as one script reads them."""
        rows: list[str] = d.execute_script(
            "return Array.from(document.querySelectorAll("
            '\'[data-testid="workers"] tr[data-testid^="worker-"]\'), r => r.innerText)'
        )
        return [row for row in rows if "PROGRESS" in row]

    rows = wait_for(
        browser,
        lambda d: len(rows := busy_rows(d)) == WORKERS and rows,
        message=f"{WORKERS} workers running PROGRESS",
    )
    for job in held:
        assert any(row.split()[2] == str(job) for row in rows), (job, rows)
    assert all("50 %" in row and "rendering page 3 of 7" in row for row in rows), rows
    shot(browser, "dashboard", whole=True)

    # The other pages agree, in a tab of their own (this one is hidden meanwhile).
    dashboard_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(address(web.port, "/jobs"))
    for job in held:
        assert text(browser, f"job-row-{job}", '[data-testid="job-state"]') == "RUNNING"
    assert text(browser, f"job-row-{later}", '[data-testid="job-state"]') == "QUEUED"
    shot(browser, "jobs")
    browser.get(address(web.port, "/queues"))
    assert text(browser, "queue-row-exports", "td:nth-child(3)") == str(WORKERS)  # running
    shot(browser, "queues")
    browser.close()
    browser.switch_to.window(dashboard_tab)

    release.touch()
    wait_for(browser, lambda d: _finished(d) == str(total + WORKERS), message="all finished")
    wait_for(browser, lambda d: busy_rows(d) == [], message="the workers idle again")
    chart = read(browser, "chart")
    assert chart is not None
    assert f"{total + WORKERS} finished, {FAILING} failed" in chart.html  # its title
    assert browser.execute_script("return window.__semantica_mark") == "still here"
    assert browser.console_errors() == []
    assert browser.dialogs() == []
