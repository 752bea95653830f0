"""The queues page in a real browser: its actions, and a live page that minds its reader.

* Pause and Resume say what they did and the row shows it; a job of a paused queue
  waits on the jobs page with its reason, and runs once the queue is resumed.
* A limit being typed into the live-redrawn page is not wiped by a redraw: an update
  that comes while the field has focus is held (app.js), and Set then sets what was
  typed.
* A tab that is hidden lets go of its live stream (a browser opens only six connections
  to one server) and, shown again, redraws with what changed meanwhile.

The page is never reloaded by any of this: a mark left in the page's window survives.
"""

from __future__ import annotations

import json
from pathlib import Path

from browserkit import (
    Browser,
    address,
    by_testid,
    click,
    element,
    login,
    read,
    streams,
    text,
    wait_for,
    watch_streams,
)
from harness import Daemon
from selenium.webdriver.common.keys import Keys
from webkit import WebView


def _enqueue(daemon: Daemon, *args: str) -> int:
    enqueued = daemon.semctl("enqueue", *args)
    assert enqueued.code == 0, enqueued.err
    return int(enqueued.out)


def _mark(browser: Browser) -> None:
    """Leave a mark in the page's window: a reload would wipe it."""
    browser.execute_script("window.__semantica_mark = 'still here'")


def _not_reloaded(browser: Browser) -> bool:
    return browser.execute_script("return window.__semantica_mark") == "still here"


def _queued_count(browser: Browser, queue: str) -> str | None:
    """The QUEUED count the queues page shows for ``queue`` (its second column)."""
    return text(browser, f"queue-row-{queue}", "td:nth-child(2)")


def test_pause_a_queue_its_job_waits_and_resume_runs_it(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    first = _enqueue(daemon, "exec", "--queue", "mail", "--", "true")
    assert daemon.semctl("wait", str(first)).code == 0
    login(browser, web.url)
    browser.get(address(web.port, "/queues"))
    assert text(browser, "queue-row-mail", '[data-testid="queue-paused"]') == "running"

    click(browser, "queue-row-mail", '[data-testid="queue-pause"]')
    assert element(browser, "flash").text == (
        "Queue mail paused: none of its jobs starts until resumed"
    )
    assert text(browser, "queue-row-mail", '[data-testid="queue-paused"]') == "paused"

    job = _enqueue(daemon, "exec", "--queue", "mail", "--subject", "weekly-digest", "--", "true")
    browser.get(address(web.port, "/jobs?queue=mail"))
    row = wait_for(browser, lambda d: read(d, f"job-row-{job}"), message=f"job {job} listed")
    assert "QUEUED" in row.text
    assert "paused queue" in row.text  # why it waits, in words
    _mark(browser)

    # Resumed from another tab (a second page of the view): the open jobs page shows
    # the job run, with no reload.
    jobs_tab = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.get(address(web.port, "/queues"))
    click(browser, "queue-row-mail", '[data-testid="queue-resume"]')
    assert element(browser, "flash").text == "Queue mail resumed"
    assert text(browser, "queue-row-mail", '[data-testid="queue-paused"]') == "running"
    browser.close()
    browser.switch_to.window(jobs_tab)

    wait_for(
        browser,
        lambda d: text(d, f"job-row-{job}", '[data-testid="job-state"]') == "DONE",
        message=f"job {job} DONE on the jobs page",
    )
    assert "paused" not in (text(browser, f"job-row-{job}") or "")
    assert _not_reloaded(browser)
    assert browser.console_errors() == []


def test_a_limit_being_typed_is_not_wiped_by_a_redraw(
    daemon: Daemon, web: WebView, browser: Browser, short_tmp: Path
) -> None:
    # Both workers busy, so that a job enqueued later stays QUEUED (a count that moves).
    release = short_tmp / "release"
    payload = json.dumps({"release": str(release), "message": "exporting"})
    for _ in range(3):
        _enqueue(daemon, "PROGRESS", "--queue", "exports", "--payload", payload)
    watch_streams(browser)
    login(browser, web.url)
    browser.get(address(web.port, "/queues"))
    wait_for(browser, lambda d: _queued_count(d, "exports") == "1", message="1 export queued")
    # The stream's first fragment (what the page shows already) is in before typing starts.
    wait_for(browser, lambda d: streams(d, "/live/queues")[0].messages > 0, message="live")
    _mark(browser)

    field = element(browser, "queue-row-exports").find_element(*by_testid("queue-limit-input"))
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys("2")
    (live,) = streams(browser, "/live/queues")
    got = live.messages

    # A change the page is told of while the field has focus: the fragment comes, and waits.
    _enqueue(daemon, "PROGRESS", "--queue", "exports", "--payload", payload)
    wait_for(
        browser,
        lambda d: streams(d, "/live/queues")[0].messages > got,
        message="an update of the queues page",
    )
    field = element(browser, "queue-row-exports").find_element(*by_testid("queue-limit-input"))
    assert field.get_attribute("value") == "2"
    assert browser.switch_to.active_element == field
    assert _queued_count(browser, "exports") == "1"  # the update is held, not drawn
    assert _not_reloaded(browser)

    field.send_keys(Keys.ENTER)  # submits the limit's form
    assert element(browser, "flash").text == "Queue exports: at most 2 jobs run at once"
    assert text(browser, "queue-row-exports", '[data-testid="queue-limit"]') == "2"
    assert _queued_count(browser, "exports") == "2"
    assert [q.limit for q in daemon.client().queues() if q.name == "exports"] == [2]
    release.touch()
    assert browser.console_errors() == []


def test_a_hidden_tab_lets_go_of_its_stream_and_redraws_when_shown(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    _enqueue(daemon, "exec", "--queue", "mail", "--", "true")
    watch_streams(browser)
    login(browser, web.url)
    browser.get(address(web.port, "/queues"))
    wait_for(browser, lambda d: _queued_count(d, "mail") is not None, message="the mail queue")
    wait_for(browser, lambda d: streams(d, "/live/queues")[0].messages > 0, message="live")
    _mark(browser)
    queues_tab = browser.current_window_handle

    # Another tab in front: this one is hidden (a real visibilitychange) and closes its stream.
    browser.switch_to.new_window("tab")
    assert daemon.semctl("pause", "mail").code == 0
    browser.close()
    browser.switch_to.window(queues_tab)  # shown again
    wait_for(
        browser,
        lambda d: text(d, "queue-row-mail", '[data-testid="queue-paused"]') == "paused",
        message="the page redrawn with the queue paused",
    )
    seen = streams(browser, "/live/queues")
    assert [s.open for s in seen] == [False, True], seen  # let go while hidden, then anew
    assert _not_reloaded(browser)
    assert browser.console_errors() == []
