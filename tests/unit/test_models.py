"""The job state machine (the transition table) and the validation of job specs."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from semantica.errors import BadInput
from semantica.models import (
    TERMINAL_STATES,
    TRANSITIONS,
    InvalidTransition,
    JobSpec,
    JobState,
    check_transition,
    validate_spec,
)

ALL_PAIRS = list(itertools.product(JobState, JobState))
ALLOWED = sorted(TRANSITIONS)
REFUSED = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def _id(pair: tuple[JobState, JobState]) -> str:
    return f"{pair[0]}->{pair[1]}"


# ---------------------------------------------------------------- transitions


@pytest.mark.parametrize("pair", ALLOWED, ids=_id)
def test_every_listed_transition_is_allowed(pair: tuple[JobState, JobState]) -> None:
    """Every move in the table is accepted and named by its event."""
    src, dst = pair
    assert check_transition(src, dst) == TRANSITIONS[pair]


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_every_other_transition_is_refused(pair: tuple[JobState, JobState]) -> None:
    """A move missing from the table is refused with a message naming both states."""
    src, dst = pair
    with pytest.raises(InvalidTransition) as info:
        check_transition(src, dst)
    assert str(src) in info.value.message
    assert str(dst) in info.value.message


def test_table_covers_the_expected_moves() -> None:
    """The table holds exactly the lifecycle the design describes, and nothing else."""
    q, r = JobState.QUEUED, JobState.RUNNING
    assert dict(TRANSITIONS) == {
        (q, r): "lease",
        (q, JobState.CANCELLED): "cancel",
        (q, JobState.SUPERSEDED): "supersede",
        (r, JobState.DONE): "complete",
        (r, JobState.FAILED): "fail",
        (r, JobState.CANCELLED): "cancel",
        (r, q): "requeue",
        (JobState.FAILED, q): "retry",
        (JobState.CANCELLED, q): "retry",
    }


@pytest.mark.parametrize("src", sorted(TERMINAL_STATES))
def test_finished_states_leave_only_by_retry_to_queued(src: JobState) -> None:
    """A finished job can only be put back in the queue, by `semctl retry`."""
    exits = {dst: event for (s, dst), event in TRANSITIONS.items() if s == src}
    assert set(exits) <= {JobState.QUEUED}
    assert set(exits.values()) <= {"retry"}


@pytest.mark.parametrize("src", [JobState.DONE, JobState.SUPERSEDED])
def test_done_and_superseded_never_leave(src: JobState) -> None:
    """A DONE or SUPERSEDED job stays so forever, even when retried."""
    for dst in JobState:
        with pytest.raises(InvalidTransition):
            check_transition(src, dst)


def test_no_state_moves_to_itself() -> None:
    """No event leaves a job in the state it was in."""
    assert all(src != dst for src, dst in TRANSITIONS)


def _reachable(start: JobState) -> set[JobState]:
    seen, todo = {start}, [start]
    while todo:
        src = todo.pop()
        for s, dst in TRANSITIONS:
            if s == src and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_every_state_is_reachable_from_queued() -> None:
    """A new job can end up in any state the engine reports."""
    assert _reachable(JobState.QUEUED) == set(JobState)


@pytest.mark.parametrize("src", [JobState.QUEUED, JobState.RUNNING])
def test_unfinished_jobs_can_always_finish(src: JobState) -> None:
    """A queued or running job always has a way to reach a finished state."""
    assert _reachable(src) & TERMINAL_STATES
    assert src not in TERMINAL_STATES


# ---------------------------------------------------------------- validate_spec

AT = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)

BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("priority too high", {"priority": 1001}, "priority"),
    ("priority too low", {"priority": -1001}, "priority"),
    ("max_attempts zero", {"max_attempts": 0}, "max.attempts"),
    ("max_attempts too many", {"max_attempts": 1001}, "max.attempts"),
    ("queue empty", {"queue": ""}, "queue"),
    ("queue with space", {"queue": "a b"}, "queue"),
    ("queue with slash", {"queue": "a/b"}, "queue"),
    ("queue too long", {"queue": "q" * 65}, "queue"),
    ("queue non-ascii", {"queue": "café"}, "queue"),
    ("type empty", {"type": ""}, "type"),
    ("type unprintable", {"type": "a\nb"}, "type"),
    ("type too long", {"type": "t" * 201}, "type"),
    ("subject empty", {"subject": ""}, "subject"),
    ("generation negative", {"generation": -1}, "generation"),
    ("delay negative", {"delay": -1.0}, "delay"),
    ("delay nan", {"delay": math.nan}, "delay"),
    ("delay inf", {"delay": math.inf}, "delay"),
    ("timeout negative", {"timeout": -0.5}, "timeout"),
    ("timeout nan", {"timeout": math.nan}, "timeout"),
    ("timeout inf", {"timeout": math.inf}, "timeout"),
    ("timeout zero", {"timeout": 0.0}, "timeout"),
    ("backoff negative", {"backoff": -2.0}, "backoff"),
    ("backoff nan", {"backoff": math.nan}, "backoff"),
    ("backoff inf", {"backoff": math.inf}, "backoff"),
    ("delay and at", {"delay": 5.0, "at": AT}, "delay"),
    ("naive at", {"at": datetime(2027, 1, 2, 3, 4, 5)}, "--at"),
]


@pytest.mark.parametrize(
    ("fields", "field_word"), [case[1:] for case in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_out_of_range_fields_are_refused_naming_the_field(
    fields: dict[str, Any], field_word: str
) -> None:
    """A spec with a field out of its documented range is refused with a reason naming it."""
    spec = JobSpec(**{"type": "T", **fields})
    with pytest.raises(BadInput, match=field_word):
        validate_spec(spec)


GOOD_SPECS: list[dict[str, Any]] = [
    {},
    {"priority": 1000, "max_attempts": 1000},
    {"priority": -1000, "max_attempts": 1},
    {"queue": "Q" * 64},
    {"queue": "build.linux:x86_64-fast"},
    {"type": "t" * 200, "subject": "s" * 4096, "generation": 0},
    {"delay": 0.0, "timeout": 0.001, "backoff": 0.0},
    {"at": AT},
    {"at": datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=5)},
    {"payload": {"argv": ["echo", "hi"]}, "require_charging": True, "require_idle": True},
]


@pytest.mark.parametrize("fields", GOOD_SPECS, ids=str)
def test_valid_specs_pass(fields: dict[str, Any]) -> None:
    """A spec at the edges of every documented range is accepted."""
    validate_spec(JobSpec(**{"type": "T", **fields}))


def test_queue_name_with_trailing_newline_is_refused() -> None:
    """A queue name ending in a newline is refused like any other bad character."""
    with pytest.raises(BadInput, match="queue"):
        validate_spec(JobSpec(type="T", queue="default\n"))
