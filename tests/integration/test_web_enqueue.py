"""The enqueue form of ``semctl web``, over HTTP: good input makes the job, bad input
is refused with its reason on the form, what was typed kept, and nothing added."""

from __future__ import annotations

from harness import Daemon
from markupsafe import escape
from webkit import HttpSession, WebView

from semantica.models import JobState


def count(daemon: Daemon) -> int:
    return sum(daemon.client().status().counts.values())


def form(**fields: str) -> dict[str, str]:
    values = {
        "type": "exec",
        "command": "",
        "payload": "",
        "queue": "default",
        "subject": "",
        "priority": "0",
        "max_attempts": "3",
        "timeout": "",
        "delay": "",
    }
    values.update(fields)
    return values


def enqueue(user: HttpSession, **fields: str) -> tuple[int, str]:
    """POST the form; the new job's id from the redirect, and the page it leads to."""
    user.get("/enqueue")
    reply = user.post("/enqueue", form(**fields))
    assert reply.status == 303, reply
    assert reply.location is not None and reply.location.startswith("/jobs/")
    return int(reply.location.rsplit("/", 1)[1]), user.get(reply.location).text


def test_an_exec_command_line_is_split_as_a_shell_would(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    page = user.get("/enqueue")
    assert page.status == 200 and 'data-testid="enqueue-form"' in page.text
    job_id, shown = enqueue(
        user,
        command="""sh -c 'echo "$0 and $1"' "one two" three""",
        queue="web",
        subject="<b>s</b>",
        priority="5",
        max_attempts="2",
        timeout="60",
        delay="0",
    )
    assert f"Enqueued job {job_id}" in shown
    assert "&lt;b&gt;s&lt;/b&gt;" in shown
    job = daemon.client().wait(job_id, timeout=30)
    assert job.payload == {"argv": ["sh", "-c", 'echo "$0 and $1"', "one two", "three"]}
    assert (job.queue, job.subject, job.priority, job.max_attempts, job.timeout) == (
        "web",
        "<b>s</b>",
        5,
        2,
        60.0,
    )
    assert job.state == JobState.DONE
    assert daemon.client().logs(job_id) == ["one two and three"]


def test_a_handler_type_takes_a_json_payload(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    job_id, _ = enqueue(user, type="ADD", payload='{"a": 20, "b": 22}', delay="3600")
    job = daemon.client().get(job_id)
    assert (job.type, job.payload, job.state) == ("ADD", {"a": 20, "b": 22}, JobState.QUEUED)
    assert job.run_after is not None
    assert user.get("/enqueue?queue=mail").text.count('value="mail"') == 1


def test_bad_input_is_refused_on_the_form_and_nothing_is_added(
    web: WebView, daemon: Daemon
) -> None:
    user = web.session()
    before = count(daemon)
    for fields, reason in [
        ({"type": "ADD", "payload": "{not json"}, "payload is not JSON: "),
        ({"command": "echo 'unclosed"}, "command: No closing quotation"),
        ({"command": ""}, "an exec job needs a command line"),
        ({"type": "ADD", "command": "echo hi"}, "a command line is for exec jobs"),
        ({"command": "true", "priority": "high"}, "priority must be a whole number, not 'high'"),
        ({"command": "true", "priority": "5000"}, "priority must be between -1000 and 1000"),
        ({"command": "true", "timeout": "-1"}, "timeout must be a number of seconds"),
        ({"command": "true", "queue": "no spaces"}, "queue name must be 1-64 of"),
        ({"type": ""}, "a job needs a type"),
    ]:
        user.get("/enqueue")
        reply = user.post("/enqueue", form(**fields))
        assert reply.status == 400, (fields, reply.status)
        assert 'data-testid="problem"' in reply.text
        assert str(escape(reason)) in reply.text, (reason, reply.text)
        for value in fields.values():  # what was typed is kept
            assert str(escape(value)) in reply.text, value
    assert count(daemon) == before


def test_the_form_needs_its_csrf_token(web: WebView, daemon: Daemon) -> None:
    user = web.session()
    user.get("/enqueue")
    before = count(daemon)
    assert user.post("/enqueue", form(command="true"), csrf=False).status == 403
    assert user.post("/enqueue", form(command="true", csrf="forged"), csrf=False).status == 403
    stranger = web.session(login=False)
    assert (
        stranger.post("/enqueue", form(command="true", csrf=user.csrf or ""), csrf=False).status
        == 401
    )
    assert count(daemon) == before
