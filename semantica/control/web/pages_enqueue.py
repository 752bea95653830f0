"""The enqueue form: a job from the browser, as ``semctl enqueue`` makes one.

``GET /enqueue`` shows the form (``?queue=NAME`` fills in the queue); ``POST /enqueue``
(CSRF-checked) adds the job and goes to its page, whose flash says "Enqueued job N".

* An ``exec`` job's command is one line, split into its arguments as a shell would
  (quotes, backslashes; no variables, globs or pipes: it is not run by a shell). It
  runs where the supervisor's workers run, with their environment.
* Any other type takes a JSON payload (or none).
* Priority, max attempts, timeout and delay as ``semctl enqueue``'s options; an empty
  field is the default.

Input that cannot make a job is refused with the one-line reason, the client's
("payload is not JSON: ...") or the supervisor's, shown on the form with what was typed
kept (``400``); nothing is added.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from semantica.control.web.access import action_form, render, session_of, web_of
from semantica.errors import BadInput, SemanticaError
from semantica.models import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, EXEC_TYPE, short_repr

#: The form's fields, and what each holds when the form is first shown.
FIELDS: dict[str, str] = {
    "type": EXEC_TYPE,
    "command": "",
    "payload": "",
    "queue": DEFAULT_QUEUE,
    "subject": "",
    "priority": "0",
    "max_attempts": str(DEFAULT_MAX_ATTEMPTS),
    "timeout": "",
    "delay": "",
}
#: The number fields: field -> (what the reason calls it, its type).
NUMBERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "priority": ("priority", int),
    "max_attempts": ("max attempts", int),
    "timeout": ("timeout", float),
    "delay": ("delay", float),
}


def job_of_form(values: Mapping[str, str]) -> tuple[str, Any, dict[str, Any]]:
    """The type, payload and options of ``enqueue`` for the form's ``values``.

    Raises:
        BadInput: with the one-line reason (the supervisor checks the rest).
    """
    type = values.get("type", "").strip()
    if not type:
        raise BadInput("a job needs a type: exec for a command, or a handler's type")
    command = values.get("command", "").strip()
    text = values.get("payload", "").strip()
    payload: Any = None
    if text:
        try:
            payload = msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise BadInput(f"payload is not JSON: {exc}") from None
        except RecursionError:
            raise BadInput("payload is nested too deeply") from None
    if command:
        if type != EXEC_TYPE:
            raise BadInput(f"a command line is for exec jobs; {type} takes a JSON payload")
        if text:
            raise BadInput("give an exec job a command line or a payload, not both")
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise BadInput(f"command: {exc} (in {short_repr(command)})") from None
        payload = {"argv": argv}
    elif type == EXEC_TYPE and not text:
        raise BadInput("an exec job needs a command line")
    options: dict[str, Any] = {"queue": values.get("queue", "").strip() or DEFAULT_QUEUE}
    subject = values.get("subject", "")
    if subject.strip():
        options["subject"] = subject
    for name, (label, kind) in NUMBERS.items():
        raw = values.get(name, "").strip()
        if not raw:
            continue
        try:
            options[name] = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number of seconds"
            raise BadInput(f"{label} must be {noun}, not {short_repr(raw)}") from None
    return type, payload, options


def _form(request: Request, session: Any, values: dict[str, str], problem: str) -> Response:
    return render(
        request,
        "enqueue.html",
        session,
        status_code=400 if problem else 200,
        page="enqueue",
        values=values,
        problem=problem,
    )


async def enqueue_page(request: Request) -> Response:
    session = session_of(request)
    values = dict(FIELDS)
    queue = request.query_params.get("queue", "").strip()
    if queue:
        values["queue"] = queue
    return _form(request, session, values, "")


async def enqueue(request: Request) -> Response:
    session, form = await action_form(request)
    values = {name: str(form.get(name) or "") for name in FIELDS}
    try:
        type, payload, options = job_of_form(values)
        job = await web_of(request).client.enqueue(type, payload, **options)
    except SemanticaError as exc:
        return _form(request, session, values, exc.message)
    session.flash(f"Enqueued job {job.id}")
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


ROUTES = [
    Route("/enqueue", enqueue_page, methods=["GET"]),
    Route("/enqueue", enqueue, methods=["POST"]),
]
