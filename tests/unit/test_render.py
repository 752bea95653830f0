"""How semctl draws a job and the line under a list, for people."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_top_frame import _job

from semantica.control import render
from semantica.control.client import JobPage
from semantica.models import JobState


def test_a_list_says_when_more_jobs_match_than_it_shows() -> None:
    """Under a list cut at its limit, one line says so; with the count capped at 10,000,
    a list of all 10,000 still says more match."""
    page = JobPage([_job(n) for n in range(3)])
    page.total = 3
    assert render.shown_of(page) is None
    page.total = 1234
    assert render.shown_of(page) == "3 of 1,234 shown"
    page.total, page.total_capped = 3, True  # as many shown as counted, and more exist
    assert render.shown_of(page) == "3 of 3+ shown"


def test_a_job_that_never_ran_shows_no_run_time(capsys: pytest.CaptureFixture[str]) -> None:
    """A superseded job finished without starting: `show` gives its end, no empty "took"."""
    job = _job(7, state=JobState.SUPERSEDED, finished_at=datetime.now(UTC), superseded_by=8)
    render.job_details(job)
    [finished] = [line for line in capsys.readouterr().out.splitlines() if "finished" in line]
    assert "took" not in finished


def test_one_captured_variable_is_one_variable(capsys: pytest.CaptureFixture[str]) -> None:
    job = _job(7, type="exec", payload={"argv": ["true"], "env": {"A": "1"}})
    render.job_details(job)
    assert "<1 variable: semctl show 7 --json prints them>" in capsys.readouterr().out


def test_a_job_made_by_a_schedules_run_says_by_hand(capsys: pytest.CaptureFixture[str]) -> None:
    """``schedule run`` and ``Client.run_schedule`` alike make a job at no slot: ``show``
    says it was run by hand (not which tool did it); a slot's job names its slot."""
    render.job_details(_job(7, schedule="nightly"))
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("from")]
    assert line.split(None, 1)[1] == "schedule nightly (run by hand)"
    slot = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
    render.job_details(_job(8, schedule="nightly", slot=slot))
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("from")]
    assert line.split(None, 1)[1].startswith("schedule nightly, slot 2026-12-07 ")
