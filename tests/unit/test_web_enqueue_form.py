"""The web view's enqueue form read into ``enqueue``'s arguments (no supervisor needed)."""

from __future__ import annotations

import pytest

from semantica.control.web.pages_enqueue import FIELDS, job_of_form
from semantica.errors import BadInput


def form(**fields: str) -> dict[str, str]:
    return {**FIELDS, **fields}


def test_an_exec_command_line_is_split_as_a_shell_would() -> None:
    kind, payload, options = job_of_form(form(command="""sh -c 'echo "$1"' x 'a b' c\\ d"""))
    assert kind == "exec"
    assert payload == {"argv": ["sh", "-c", 'echo "$1"', "x", "a b", "c d"]}
    assert options == {"queue": "default", "priority": 0, "max_attempts": 3}


def test_other_types_take_json_and_the_numbers_are_read() -> None:
    kind, payload, options = job_of_form(
        form(
            type=" ADD ",
            payload='{"a": [1, 2]}',
            queue="",
            subject="  x ",
            priority="-5",
            timeout="1.5",
            delay="0",
        )
    )
    assert (kind, payload) == ("ADD", {"a": [1, 2]})
    assert options == {
        "queue": "default",
        "subject": "  x ",  # a subject is kept as typed
        "priority": -5,
        "max_attempts": 3,
        "timeout": 1.5,
        "delay": 0.0,
    }
    assert job_of_form(form(type="NOOP"))[1] is None  # no payload at all


def test_an_exec_job_may_take_its_payload_as_json() -> None:
    assert job_of_form(form(payload='{"argv": ["true"]}'))[1] == {"argv": ["true"]}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": " "}, "a job needs a type"),
        ({"command": ""}, "an exec job needs a command line"),
        ({"command": "a 'b"}, "command: No closing quotation"),
        ({"command": "true", "payload": "{}"}, "a command line or a payload, not both"),
        ({"type": "ADD", "command": "true"}, "a command line is for exec jobs; ADD takes"),
        ({"type": "ADD", "payload": "[1,"}, "payload is not JSON: "),
        ({"type": "ADD", "payload": "[" * 100_000}, "payload is"),
        ({"command": "true", "max_attempts": "2.5"}, "max attempts must be a whole number"),
        ({"command": "true", "delay": "soon"}, "delay must be a number of seconds, not 'soon'"),
    ],
)
def test_what_cannot_make_a_job_is_one_line_reason(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(BadInput) as caught:
        job_of_form(form(**fields))
    assert reason in caught.value.message
    assert "\n" not in caught.value.message
