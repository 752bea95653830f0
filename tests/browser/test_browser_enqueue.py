"""The enqueue form in a real browser: a job from the form, and input that makes none.

An exec job typed into the form runs: the browser lands on its page, which says what
was done, and its log appears there as the job writes it. A payload that is not JSON
is refused on the form with the reason, everything typed is still there to correct,
and no job was added.
"""

from __future__ import annotations

from browserkit import Browser, address, by_testid, element, login, read, shot, wait_for
from harness import Daemon
from webkit import WebView

SCRIPT = 'for n in 1 2 3 4 5; do echo "exporting batch $n of 5"; done; echo "all done"'
LINES = [*(f"exporting batch {n} of 5" for n in range(1, 6)), "all done"]


def _fill(browser: Browser, **values: str) -> None:
    """Type ``values`` into the form's fields (by name), replacing what they hold."""
    for name, value in values.items():
        field = browser.find_element("css selector", f"form.enqueue [name='{name}']")
        field.clear()
        field.send_keys(value)


def test_an_exec_job_from_the_form_runs_and_its_page_shows_its_log(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    login(browser, web.url)
    browser.find_element("link text", "Enqueue").click()
    element(browser, "enqueue-form")
    assert browser.path() == "/enqueue"
    _fill(
        browser,
        command=f"sh -c '{SCRIPT}'",
        queue="reports",
        subject="monthly <report>",
    )
    shot(browser, "enqueue")
    element(browser, "enqueue-submit").click()

    wait_for(browser, lambda d: d.path().startswith("/jobs/"), message="the job's page")
    job = int(browser.path().removeprefix("/jobs/"))
    assert element(browser, "flash").text == f"Enqueued job {job}"
    wait_for(
        browser,
        lambda d: (log := read(d, "log")) is not None and "all done" in log.text,
        message="the job's log",
    )
    log = read(browser, "log")
    assert log is not None
    assert log.text.splitlines() == LINES
    wait_for(
        browser,
        lambda d: (state := read(d, "job-state")) is not None and state.text == "DONE",
        message=f"job {job} DONE on its page",
    )
    assert (subject := read(browser, "field-subject")) is not None
    assert subject.text == "monthly <report>"
    shot(browser, "job", whole=True)

    shown = daemon.semctl("show", str(job), "--json").json()
    assert shown["payload"] == {"argv": ["sh", "-c", SCRIPT]}
    assert (shown["queue"], shown["subject"], shown["state"]) == (
        "reports",
        "monthly <report>",
        "DONE",
    )
    assert browser.console_errors() == []


def test_a_bad_payload_is_refused_on_the_form_with_the_input_kept(
    daemon: Daemon, web: WebView, browser: Browser
) -> None:
    login(browser, web.url)
    browser.get(address(web.port, "/enqueue?queue=mail"))
    payload = '{"to": "ops@example.com",'
    _fill(browser, type="NOOP", payload=payload, subject="welcome", priority="5")
    element(browser, "enqueue-submit").click()

    problem = element(browser, "problem")
    assert problem.text.startswith("payload is not JSON"), problem.text
    assert browser.path() == "/enqueue"
    form = browser.find_element(*by_testid("enqueue-form"))
    kept = {
        name: form.find_element("css selector", f"[name='{name}']").get_attribute("value")
        for name in ("type", "payload", "queue", "subject", "priority", "command")
    }
    assert kept == {
        "type": "NOOP",
        "payload": payload,
        "queue": "mail",
        "subject": "welcome",
        "priority": "5",
        "command": "",
    }
    listed = daemon.semctl("list", "--json")
    assert listed.code == 0, listed.err
    assert listed.json() == []  # nothing was added
    # The refusal is a 400 page, which the browser notes; nothing else went wrong.
    assert [e for e in browser.console_errors() if "status of 400" not in e] == []
