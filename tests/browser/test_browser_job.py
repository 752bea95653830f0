"""A job's page in a real browser: its log follows live, and it can be cancelled.

The log grows on the open page line by line as the job writes (the ``LINES``
handler writes its next line only when the test says so), with no line twice and
no reload, and keeps to its end, also when the page opens on more lines than its
box holds; whatever a job writes is text (terminal escapes dropped, markup shown
as typed). The cancel button stops a running job: the page says so and shows it
CANCELLED, as ``semctl show`` does.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

from browserkit import Browser, address, click, element, login, read, wait_for
from harness import Daemon
from webkit import WebView


def _enqueue(daemon: Daemon, *args: str) -> int:
    enqueued = daemon.semctl("enqueue", *args)
    assert enqueued.code == 0, enqueued.err
    return int(enqueued.out)


def _log_lines(browser: Browser) -> list[str]:
    log = read(browser, "log")
    return [] if log is None else log.text.splitlines()


def _state_is(state: str) -> Callable[[Browser], bool]:
    """A condition: the page shows the job in ``state``."""

    def check(browser: Browser) -> bool:
        seen = read(browser, "job-state")
        return seen is not None and seen.text == state

    return check


def test_a_jobs_log_follows_live_without_a_reload(
    daemon: Daemon, web: WebView, browser: Browser, short_tmp: Path
) -> None:
    gate = short_tmp / "gate.sock"
    job = _enqueue(daemon, "LINES", "--payload", json.dumps({"count": 3, "gate": str(gate)}))
    login(browser, web.url)
    browser.get(address(web.port, f"/jobs/{job}"))
    wait_for(browser, lambda d: _log_lines(d) == ["line 0"], message="the first line")
    browser.execute_script("window.__semantica_mark = 'still here'")

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for n in (1, 2):
            sock.sendto(b"next", str(gate))  # the handler writes its next line
            expected = [f"line {i}" for i in range(n + 1)]
            wait_for(browser, lambda d, e=expected: _log_lines(d) == e, message=f"{expected}")
        sock.sendto(b"next", str(gate))  # and now it ends

    wait_for(browser, _state_is("DONE"), message=f"job {job} DONE on its page")
    wait_for(
        browser,
        lambda d: d.find_element("css selector", "[data-testid='log']").get_attribute("data-ended"),
        message="the log to end",
    )
    assert _log_lines(browser) == ["line 0", "line 1", "line 2"]
    assert browser.execute_script("return window.__semantica_mark") == "still here"
    assert browser.console_errors() == []


_LOG_AT_END = """
const log = document.querySelector('[data-testid="log"]');
return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
"""


def test_a_long_log_opens_at_its_end_and_keeps_to_it(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    # More lines than the log's box holds before the page opens, then one more.
    script = "seq 1 300; sleep 2; echo more; sleep 60"
    job = _enqueue(daemon, "exec", "--", "sh", "-c", script)
    waited = daemon.semctl("wait", str(job), "--timeout", "1")  # the 300 lines are written
    assert waited.code != 0, waited.out
    login(browser, web.url)
    browser.get(address(web.port, f"/jobs/{job}"))
    wait_for(browser, lambda d: "300" in _log_lines(d), message="the 300 lines")
    assert browser.execute_script(_LOG_AT_END), "the log opened at its top, not its end"

    wait_for(browser, lambda d: "more" in _log_lines(d), message="the line written later")
    assert browser.execute_script(_LOG_AT_END), "the log did not keep to its end"
    assert daemon.semctl("cancel", str(job)).code == 0  # returns once it has ended
    browser.get(address(web.port, f"/jobs/{job}"))  # an ended job's log opens at its end too
    wait_for(browser, lambda d: "more" in _log_lines(d), message="the ended job's log")
    assert browser.execute_script(_LOG_AT_END), "the ended job's log opened at its top"
    assert browser.console_errors() == []


def test_what_a_job_writes_is_shown_as_text(daemon: Daemon, web: WebView, browser: Browser) -> None:
    script = r"printf '\033[31mred\033[0m <img src=x onerror=alert(1)> \033]0;title\007done\n'"
    job = _enqueue(
        daemon, "exec", "--subject", "<img src=x onerror=alert(2)>", "--", "sh", "-c", script
    )
    assert daemon.semctl("wait", str(job)).code == 0
    login(browser, web.url)
    browser.get(address(web.port, f"/jobs/{job}"))

    log = wait_for(browser, lambda d: (seen := read(d, "log")) and "done" in seen.text and seen)
    assert log.text.strip() == "red <img src=x onerror=alert(1)> done"
    assert log.tags == []
    subject = read(browser, "field-subject")
    assert subject is not None
    assert subject.text == "<img src=x onerror=alert(2)>"
    assert subject.tags == []
    assert browser.dialogs() == []
    assert browser.console_errors() == []


def test_cancel_a_running_job_from_its_page(
    daemon: Daemon, web: WebView, browser: Browser, short_tmp: Path
) -> None:
    payload = json.dumps({"marker": str(short_tmp / "stopped")})
    job = _enqueue(daemon, "STOP_WORDS", "--subject", "nightly-report", "--payload", payload)
    login(browser, web.url)
    browser.get(address(web.port, f"/jobs/{job}"))
    wait_for(browser, _state_is("RUNNING"), message=f"job {job} RUNNING")
    wait_for(browser, lambda d: "ready" in _log_lines(d), message="the job's first line")

    click(browser, "cancel")
    flash = element(browser, "flash")
    assert flash.text == f"Cancelled job {job}"
    wait_for(browser, _state_is("CANCELLED"), message=f"job {job} CANCELLED on its page")
    wait_for(browser, lambda d: "saw cancel" in _log_lines(d), message="the job's last line")

    shown = daemon.semctl("show", str(job), "--json")
    assert shown.code == 0, shown.err
    assert shown.json()["state"] == "CANCELLED"
    assert (short_tmp / "stopped").exists()  # the handler saw the cancel and ended
    assert browser.console_errors() == []
