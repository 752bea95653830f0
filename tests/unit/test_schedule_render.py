"""How semctl draws schedules for people: apply's diff, ``list``, ``show`` and top's section."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_top_frame import _draw, _reply

from semantica.control import schedule_render as render
from semantica.models import JobSpec, JobState
from semantica.schedules import Schedule, ScheduleChanges, ScheduleRun, ScheduleSpec

#: 2026-12-07 02:00 UTC: 03:00 in Berlin (CET, winter).
WINTER = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
#: 2026-07-07 01:00 UTC: 03:00 in Berlin (CEST, summer).
SUMMER = datetime(2026, 7, 7, 1, 0, tzinfo=UTC)


def _spec(name: str, **fields: Any) -> ScheduleSpec:
    return ScheduleSpec(name=name, job=JobSpec(type="NOOP"), **({"every": 3600.0} | fields))


def _schedule(name: str = "nightly", **fields: Any) -> Schedule:
    base: dict[str, Any] = {
        "job": JobSpec(type="NOOP"),
        "cron": "0 3 * * *",
        "tz": "Europe/Berlin",
        "next_slot": WINTER,
        "next_fire": WINTER,
    }
    return Schedule(name=name, **(base | fields))


def _run(job_id: int | None, outcome: str = "fired", **fields: Any) -> ScheduleRun:
    base: dict[str, Any] = {"slot": WINTER, "at": WINTER, "job_id": job_id}
    if job_id is not None:
        base["state"] = JobState.DONE
    return ScheduleRun(outcome=outcome, **(base | fields))


def _words(line: str) -> str:
    """A row with its columns' padding squeezed to single spaces."""
    return " ".join(line.split())


# ------------------------------------------------------------------ apply's diff


def test_the_diff_lists_created_updated_and_removed_then_the_rest() -> None:
    """``+`` created, ``~`` updated (each with when it fires), ``-`` removed, then how
    many are unchanged: the lines ``schedule apply`` prints."""
    specs = [
        _spec("nightly", cron="0 3 * * *", tz="Europe/Berlin", every=None),
        _spec("often", every=900.0, jitter=30.0),
        _spec("same"),
        _spec("alike"),
    ]
    changes = ScheduleChanges(
        created=["nightly"], updated=["often"], removed=["old"], unchanged=["alike", "same"]
    )
    assert render.diff_lines(changes, specs) == [
        "+ nightly  cron 0 3 * * * Europe/Berlin",
        "~ often  every 15m ~30s",
        "- old",
        "= 2 unchanged",
    ]


def test_a_dry_run_says_nothing_was_changed() -> None:
    changes = ScheduleChanges(created=["tick"], dry_run=True)
    assert render.diff_lines(changes, [_spec("tick")]) == [
        "+ tick  every 1h",
        "dry run: nothing was changed",
    ]


def test_a_file_that_changes_nothing_says_so() -> None:
    changes = ScheduleChanges(unchanged=["tick"])
    assert render.diff_lines(changes, [_spec("tick")]) == ["= 1 unchanged", "no changes"]
    assert render.diff_lines(ScheduleChanges(dry_run=True), []) == [
        "no changes",
        "dry run: nothing was changed",
    ]


def test_removing_everything_lists_every_name() -> None:
    """An empty file removes all the schedules: the diff names each one."""
    changes = ScheduleChanges(removed=["a", "b"])
    assert render.diff_lines(changes, []) == ["- a", "- b"]


def test_an_update_names_what_changed_given_the_schedules_before() -> None:
    """Given the schedules as they were, each ``~`` line says which keys of the file
    differ (an exec job's payload by its own keys: argv, cwd, env), so that a dry run
    after an edit shows what the edit does, even where ``when`` did not move."""

    def backup(**fields: Any) -> ScheduleSpec:
        payload = {"argv": ["./backup.sh"], "cwd": "/home/me", "env": {"DIR": "/mnt/a"}}
        job = JobSpec(type="exec", payload=fields.pop("payload", payload), max_attempts=2)
        base: dict[str, Any] = {"cron": "30 2 * * *", "tz": "UTC", "job": job}
        return ScheduleSpec(name="backup", **(base | fields))

    before = [backup(), _spec("often")]
    edited = backup(
        cron="15 3 * * *",
        payload={"argv": ["./backup.sh"], "cwd": "/home/me", "env": {"DIR": "/mnt/b"}},
    )
    changes = ScheduleChanges(updated=["backup", "often"], dry_run=True)
    often = ScheduleSpec(name="often", job=JobSpec(type="NOOP", queue="slow"), every=3600.0)
    often.jitter = 5.0
    specs = [edited, often]
    assert render.diff_lines(changes, specs, before) == [
        "~ backup  cron 15 3 * * * UTC  (changes cron, env)",
        "~ often  every 1h ~5s  (changes jitter, queue)",
        "dry run: nothing was changed",
    ]
    paused = backup(paused=True, job=JobSpec(type="exec", payload={"argv": ["x"]}))
    assert render.changed_keys(backup(), paused) == ["paused", "argv", "cwd", "env", "max_attempts"]


# ------------------------------------------------------------------ the pieces


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"cron": "0 3 * * *", "tz": "Europe/Berlin"}, "cron 0 3 * * * Europe/Berlin"),
        ({"every": 90.0}, "every 1m30s"),
        ({"every": 5400.0, "jitter": 60.0}, "every 1h30m ~1m"),
        ({"cron": "*/5 * * * *", "tz": "UTC", "jitter": 1.5}, "cron */5 * * * * UTC ~1.5s"),
    ],
)
def test_when_says_cron_or_every_with_the_jitter(fields: dict[str, Any], text: str) -> None:
    assert render.when(_spec("s", **({"every": None} | fields))) == text


def test_times_are_in_the_schedules_zone_with_its_abbreviation() -> None:
    """The same 03:00 in Berlin is CET in winter and CEST in summer; seconds only when
    there are some; no time is a dash."""
    assert render.at(WINTER, "Europe/Berlin") == "2026-12-07 03:00 CET"
    assert render.at(SUMMER, "Europe/Berlin") == "2026-07-07 03:00 CEST"
    assert render.at(WINTER.replace(second=7), "UTC") == "2026-12-07 02:00:07 UTC"
    assert render.at(None, "UTC") == "-"


def test_a_run_says_how_it_went_and_its_jobs_state() -> None:
    assert render.run_text(_run(12)) == "fired: job 12 DONE"
    assert render.run_text(_run(13, "manual", state=JobState.RUNNING)) == "manual: job 13 RUNNING"
    assert render.run_text(_run(None, "skipped")) == "skipped"
    assert render.run_text(_run(9, state=None)) == "fired: job 9 gone"  # (pruned since)


def test_list_and_top_say_when_next_and_how_the_last_went() -> None:
    schedule = _schedule(runs=[_run(12)])
    assert render.next_text(schedule) == "2026-12-07 03:00 CET"
    assert render.last_text(schedule) == "2026-12-07 03:00 CET fired: job 12 DONE"
    assert render.last_text(_schedule()) == "-"  # never run
    assert render.last_text(_schedule(last_job_id=4)) == "job 4"  # runs not sent
    paused = _schedule(paused=True, next_slot=None, next_fire=None)
    assert render.next_text(paused) == "paused"


# ------------------------------------------------------------------ list and show


def test_list_draws_one_row_per_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    render.schedule_table(
        [
            _schedule(runs=[_run(12)]),
            _schedule("tick", cron=None, every=1.0, tz="UTC", paused=True, next_fire=None),
        ]
    )
    header, nightly, tick = capsys.readouterr().out.splitlines()
    assert header.split() == ["NAME", "WHEN", "NEXT", "LAST", "PAUSED"]
    assert _words(nightly) == (
        "nightly cron 0 3 * * * Europe/Berlin 2026-12-07 03:00 CET "
        "2026-12-07 03:00 CET fired: job 12 DONE no"
    )
    assert _words(tick) == "tick every 1s paused - yes"


def test_no_schedules_is_said_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    render.schedule_table([])
    assert capsys.readouterr().out == "no schedules\n"


def _shown(capsys: pytest.CaptureFixture[str], schedule: Schedule) -> dict[str, str]:
    """``show``'s grid as {label: value} (the first line of each), and the rest under ""."""
    render.schedule_details(schedule)
    rows: dict[str, str] = {}
    for line in capsys.readouterr().out.splitlines():
        label, _, value = line.partition("  ")
        if label and label not in rows:
            rows[label] = value.strip()
        rows[""] = rows.get("", "") + line + "\n"
    return rows


def test_show_gives_the_timing_the_counters_and_the_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = JobSpec(
        type="exec",
        payload={"argv": ["backup.sh"], "env": {"TOKEN": "s3cret", "HOME": "/root"}},
        queue="backup",
        priority=5,
        timeout=7200.0,
        backoff=90.0,
        require_charging=True,
        subject="home",
    )
    schedule = _schedule(
        job=job,
        jitter=120.0,
        next_fire=WINTER.replace(minute=1, second=30),
        catch_up="none",
        fired=3,
        skipped=1,
        missed=2,
        created_at=SUMMER,
    )
    rows = _shown(capsys, schedule)
    assert rows["schedule"] == "nightly"
    assert rows["when"] == "cron 0 3 * * * Europe/Berlin ~2m"
    assert rows["time zone"] == "Europe/Berlin"
    assert (rows["catch-up"], rows["overlap"], rows["state"]) == ("none", "skip", "active")
    assert rows["next slot"] == "2026-12-07 03:00 CET"
    assert rows["next job due"] == "2026-12-07 03:01:30 CET"  # the slot plus its jitter
    assert rows["slots"] == "3 fired, 1 skipped, 2 missed"
    assert rows["created"] == "2026-07-07 03:00 CEST"
    assert rows["job"].split() == ["exec", "queue", "backup", "priority", "5"]
    assert "max attempts 3, timeout 2h, backoff 1m30s, charging" in rows[""]
    assert rows["subject"] == "home"
    assert "backup.sh" in rows["payload"]
    # An exec job's environment (secrets, often) is a count; show --json prints it.
    assert "<2 variables: semctl schedule show nightly --json prints them>" in rows["payload"]
    assert "s3cret" not in rows[""]
    assert "no runs yet" in rows[""]


def test_show_lists_the_last_runs_newest_first(capsys: pytest.CaptureFixture[str]) -> None:
    earlier = WINTER.replace(day=6)
    runs = [
        _run(13, "manual", slot=WINTER.replace(hour=9, second=5), state=JobState.RUNNING),
        _run(12),
        _run(None, "skipped", slot=earlier, at=earlier),
        _run(11, slot=earlier.replace(day=5), at=earlier.replace(day=5), state=None),
    ]
    out = _shown(capsys, _schedule(runs=runs))[""].splitlines()
    assert "next job due" not in "\n".join(out)  # no jitter: due at the slot
    at = out.index("last runs, newest first:")
    assert out[at + 1].split() == ["SLOT", "OUTCOME", "JOB", "STATE", "DECIDED"]
    assert [_words(line) for line in out[at + 2 :]] == [
        "2026-12-07 10:00:05 CET manual 13 RUNNING 2026-12-07 03:00 CET",
        "2026-12-07 03:00 CET fired 12 DONE 2026-12-07 03:00 CET",
        "2026-12-06 03:00 CET skipped - - 2026-12-06 03:00 CET",
        "2026-12-05 03:00 CET fired 11 gone 2026-12-05 03:00 CET",
    ]


def test_what_a_schedule_holds_is_printed_never_read_as_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A subject or payload with rich markup or terminal escapes is shown as text."""
    job = JobSpec(type="NOOP", subject="[red]boom[/red]", payload={"x": "\x1b[2J"})
    rows = _shown(capsys, _schedule(job=job))
    assert rows["subject"] == "[red]boom[/red]"
    assert "\x1b" not in rows[""]


# ------------------------------------------------------------------ top


def test_top_shows_the_schedules_due_next_with_their_last_run() -> None:
    top = _reply(workers=2)
    top.schedules = [
        _schedule(runs=[_run(12)]),
        _schedule("tick", cron=None, every=1.0, tz="UTC", runs=[_run(None, "skipped")]),
    ]
    lines = _draw(top, 120, 200)
    at = next(i for i, line in enumerate(lines) if line.startswith("SCHEDULE"))
    assert lines[at].split() == ["SCHEDULE", "NEXT", "LAST", "RUN"]
    assert _words(lines[at + 1]) == (
        "nightly 2026-12-07 03:00 CET 2026-12-07 03:00 CET fired: job 12 DONE"
    )
    assert _words(lines[at + 2]) == "tick 2026-12-07 02:00 UTC 2026-12-07 02:00 UTC skipped"


def test_top_with_schedules_still_fits_80_by_24() -> None:
    """A busy engine with five schedules on an 80x24 terminal: every section, the
    schedules included, shows some rows and says how many it left out."""
    top = _reply()
    top.schedules = [_schedule(f"nightly-{i}", runs=[_run(i)]) for i in range(5)]
    lines = _draw(top, 80, 24)
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 80, "\n".join(lines)
    for header in ("WORKER", "QUEUE", "NEXT JOB", "SCHEDULE", "FAILED JOB"):
        at = next(i for i, line in enumerate(lines) if line.startswith(header))
        assert lines[at + 1][:1].isalnum(), (header, "\n".join(lines))
    assert "nightly-0" in "\n".join(lines)


def test_top_without_schedules_has_no_schedule_section() -> None:
    lines = _draw(_reply(workers=2), 120, 200)
    assert not any(line.startswith("SCHEDULE") for line in lines)
