"""What a person types for a schedule: durations, the default zone, the TOML file, the spec."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from semantica.control.schedule_client import make_schedule_spec, specs_in
from semantica.control.schedule_file import FILE_MAX_BYTES, read_schedules
from semantica.control.schedule_input import format_duration, local_zone, parse_duration
from semantica.errors import BadInput
from semantica.models import JobSpec
from semantica.schedules import ScheduleSpec

# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("3600", 3600.0),
        ("0.5", 0.5),
        (" 15M ", 900.0),
        (60, 60.0),
        (2.5, 2.5),
    ],
)
def test_durations_read_as_people_write_them(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "m", "15", "1x", "30m1h", "1h1h", "-5", "1h 30m", "1e3", "nan", "x" * 1000, True]
)
def test_anything_else_is_one_line_of_bad_input(text: str | bool) -> None:
    if text == "15":
        assert parse_duration(text) == 15.0  # (plain seconds: the control of the list)
        return
    with pytest.raises(BadInput, match=r"^--every must be a duration") as info:
        parse_duration(text, "--every")
    assert "\n" not in info.value.message and len(info.value.message) < 200


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan"), 10**10])
def test_numbers_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(BadInput, match="0 or more seconds"):
        parse_duration(value)


@pytest.mark.parametrize("seconds", [1.0, 59.0, 90.0, 900.0, 5400.0, 86400.0, 93784.0, 1.5])
def test_a_duration_is_shown_as_it_is_read(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(5400) == "1h30m" and format_duration(1.5) == "1.5s"


# ---------------------------------------------------------------- the default zone


def test_the_zone_comes_from_tz_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == "Europe/Berlin"
    monkeypatch.setenv("TZ", ":America/New_York")
    assert local_zone() == "America/New_York"
    monkeypatch.setenv("TZ", "/usr/share/zoneinfo/Asia/Tokyo")
    assert local_zone() == "Asia/Tokyo"


def test_a_tz_that_names_no_zone_falls_back_to_the_system_then_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "CET-1CEST")  # POSIX rules, not an IANA name
    fallback = local_zone()
    monkeypatch.delenv("TZ")
    assert fallback == local_zone()
    monkeypatch.setattr(os.path, "realpath", lambda path: "/nowhere/at/all")
    monkeypatch.setattr("builtins.open", _no_file)
    assert local_zone() == "UTC"


def _no_file(*args: object, **kwargs: object) -> object:
    raise FileNotFoundError


def test_the_system_zone_is_read_from_the_localtime_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    monkeypatch.setattr(os.path, "realpath", lambda path: "/usr/share/zoneinfo/Pacific/Auckland")
    assert local_zone() == "Pacific/Auckland"


# ---------------------------------------------------------------- a spec from a client


def test_a_client_spec_takes_durations_and_is_checked_before_sending() -> None:
    spec = make_schedule_spec(
        "often", "INDEX", {"p": 1}, every="15m", jitter="30s", tz="UTC", queue="q", priority=3
    )
    assert (spec.every, spec.jitter, spec.job.queue, spec.job.priority) == (900.0, 30.0, "q", 3)
    with pytest.raises(BadInput, match="cron"):
        make_schedule_spec("x", "T", cron="61 * * * *", tz="UTC")
    with pytest.raises(BadInput, match="exactly one"):
        make_schedule_spec("x", "T", cron="* * * * *", every=60, tz="UTC")
    with pytest.raises(BadInput, match="due at its slot"):
        make_schedule_spec("x", "T", every=60, tz="UTC", delay=5)
    with pytest.raises(BadInput, match="schedule name"):
        make_schedule_spec("no spaces", "T", every=60, tz="UTC")
    # Each slot's job would wait for the same jobs, and fail to fire once retention
    # deleted them: a template waits for nothing.
    for option in ("after", "after_end"):
        with pytest.raises(BadInput, match="waits for no other job"):
            make_schedule_spec("x", "T", every=60, tz="UTC", **{option: [1]})
    with pytest.raises(BadInput, match="waits for no other job"):
        make_schedule_spec("x", "T", every=60, tz="UTC", ref="a")
    with pytest.raises(BadInput, match="cannot supersede a running one"):
        make_schedule_spec("x", "T", every=60, tz="UTC", subject="s", supersede_running=True)


def test_a_jitter_is_shorter_than_the_interval() -> None:
    """--every 1s --jitter 1h fired 78 times in two hours and counted 3,563 slots missed
    while the supervisor ran; --jitter 3y made the first slot due in three years."""
    with pytest.raises(BadInput, match="jitter must be shorter than --every"):
        make_schedule_spec("x", "T", every=1, jitter=3600, tz="UTC")
    with pytest.raises(BadInput, match="jitter must be shorter than --every"):
        make_schedule_spec("x", "T", every="15m", jitter="15m", tz="UTC")
    assert make_schedule_spec("x", "T", every="15m", jitter="14m", tz="UTC").jitter == 840


def test_a_cron_jitter_is_shorter_than_the_gap_between_slots() -> None:
    """--cron '*/5 * * * *' --jitter 1h loses slots while running, as --every would:
    the jitter must be shorter than the shortest gap between the next slots, even
    when the next two slots are far apart (09:00 and 10:00 daily: one hour)."""
    message = "jitter must be shorter than the 300 s between slots of --cron, got 3600 s"
    with pytest.raises(BadInput, match=message):
        make_schedule_spec("x", "T", cron="*/5 * * * *", jitter="1h", tz="UTC")
    with pytest.raises(BadInput, match="shorter than the 300 s between slots"):
        make_schedule_spec("x", "T", cron="*/5 * * * *", jitter="5m", tz="Europe/Berlin")
    spec = make_schedule_spec("x", "T", cron="*/5 * * * *", jitter="4m", tz="UTC")
    assert spec.jitter == 240
    with pytest.raises(BadInput, match="shorter than the 3600 s between slots"):
        make_schedule_spec("x", "T", cron="0 9,10 * * *", jitter="2h", tz="UTC")
    assert make_schedule_spec("x", "T", cron="0 3 * * *", jitter="2h", tz="UTC").jitter == 7200
    # A leap day only: no gap within a year to compare with, and no slow search.
    assert make_schedule_spec("x", "T", cron="0 0 29 2 *", jitter="1d", tz="UTC").jitter


@pytest.mark.parametrize(
    "options", [{"after": [1]}, {"after_end": [1]}, {"ref": "build"}, {"after": ["build"]}]
)
def test_a_scheduled_job_waits_for_no_other_job(options: dict[str, object]) -> None:
    """Every slot's job would wait for the same job (one retention later deletes, so
    that no slot could make its job again): a template takes no dependencies."""
    with pytest.raises(BadInput, match="waits for no other job"):
        make_schedule_spec("x", "T", every=60, tz="UTC", **options)


@pytest.mark.parametrize(
    "cron",
    ["0 3 * * *\n* * * * *", "0\t3 * * *", "0 3 * * *" + " " * 2000, "0," * 600 + "0 3 * * *"],
)
def test_a_cron_expression_is_one_short_line(cron: str) -> None:
    """cronsim reads any whitespace and any length; a schedule's expression is shown on
    one line of ``schedule list``: a newline, a tab or thousands of characters are refused."""
    with pytest.raises(BadInput, match="cron expression") as caught:
        make_schedule_spec("x", "T", cron=cron, tz="UTC")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_apply_takes_specs_or_mappings_and_refuses_a_name_twice() -> None:
    spec = ScheduleSpec(name="a", job=JobSpec(type="T"), every=60.0)
    specs = specs_in([spec, {"name": "b", "type": "T", "cron": "0 3 * * *", "tz": "UTC"}])
    assert [s.name for s in specs] == ["a", "b"]
    with pytest.raises(BadInput, match="given twice"):
        specs_in([spec, spec])
    with pytest.raises(BadInput, match="needs a 'name'"):
        specs_in([{"type": "T", "every": 60}])
    with pytest.raises(BadInput, match="unknown enqueue option"):
        specs_in([{"name": "c", "type": "T", "every": 60, "colour": "red"}])


# ---------------------------------------------------------------- the TOML file

GOOD = """
[schedules.nightly]
cron = "0 3 * * *"
tz = "Europe/Berlin"
type = "exec"
argv = ["backup.sh", "--all"]
cwd = "jobs"
env = { REPO = "/mnt/backup" }
timeout = "2h"
jitter = 300

[schedules.index]
every = "15m"
catch-up = "none"
overlap = "allow"
paused = true
type = "INDEX_FILE"
payload = { path = "src" }
queue = "index"
priority = 5
"""


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_a_file_gives_its_schedules_by_name(tmp_path: Path) -> None:
    index, nightly = read_schedules(_file(tmp_path, GOOD), zone="Asia/Tokyo")
    assert (index.name, index.every, index.tz, index.catch_up, index.overlap) == (
        "index",
        900.0,
        "Asia/Tokyo",  # the default zone
        "none",
        "allow",
    )
    assert index.paused and index.job == JobSpec(
        type="INDEX_FILE", payload={"path": "src"}, queue="index", priority=5
    )
    assert (nightly.cron, nightly.tz, nightly.jitter) == ("0 3 * * *", "Europe/Berlin", 300.0)
    assert nightly.job.timeout == 7200.0
    # The command runs in cwd, taken from the file's directory, with env added to the
    # supervisor's environment: nothing of the applying shell's.
    assert nightly.job.payload == {
        "argv": ["backup.sh", "--all"],
        "cwd": str(tmp_path / "jobs"),
        "env": {"REPO": "/mnt/backup"},
    }


def test_an_exec_command_runs_in_the_home_directory_by_default(tmp_path: Path) -> None:
    text = '[schedules.a]\nevery = 60\ntype = "exec"\nargv = ["true"]\n'
    [spec] = read_schedules(_file(tmp_path, text), zone="UTC")
    assert spec.job.payload == {"argv": ["true"], "cwd": os.path.expanduser("~")}


def test_an_empty_file_means_no_schedules(tmp_path: Path) -> None:
    assert read_schedules(_file(tmp_path, "# nothing scheduled\n")) == []


BASE = '[schedules.a]\nevery = 60\ntype = "T"\n'


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nightly = 1\n", "unknown top-level key 'nightly'"),
        ("schedules = 5\n", "'schedules' must be a table"),
        ("[schedules]\na = 5\n", "schedule 'a': must be a table"),
        ('[schedules."bad name"]\nevery = 60\ntype = "T"\n', "schedule 'bad name': schedule name"),
        (BASE + "colour = 'red'\n", "schedule 'a': unknown key 'colour'"),
        (BASE + "catch_up = 'one'\ncatch-up = 'none'\n", "unknown key 'catch-up'"),
        ("[schedules.a]\nevery = 60\n", "schedule 'a': key 'type' is missing"),
        ('[schedules.a]\ntype = "T"\n', "schedule 'a': give exactly one of the keys"),
        (BASE + "cron = '* * * * *'\n", "give exactly one of the keys"),
        ('[schedules.a]\ncron = "99 * * * *"\ntype = "T"\n', "schedule 'a': key 'cron': bad cron"),
        ('[schedules.a]\ncron = 5\ntype = "T"\n', "key 'cron' must be a string"),
        (BASE + "tz = 'Mars/Olympus'\n", "schedule 'a': key 'tz': unknown time zone"),
        ('[schedules.a]\nevery = "1x"\ntype = "T"\n', "schedule 'a': key 'every': "),
        ('[schedules.a]\nevery = 0.5\ntype = "T"\n', "key 'every' must be at least 1 s"),
        ('[schedules.a]\nevery = true\ntype = "T"\n', "key 'every' must be a duration"),
        (BASE + "jitter = [1]\n", "key 'jitter' must be a duration"),
        (BASE + "catch_up = 'all'\n", "key 'catch_up' must be one of one, none"),
        (BASE + "overlap = 'queue'\n", "key 'overlap' must be one of skip, allow"),
        (BASE + "paused = 'yes'\n", "key 'paused' must be true or false"),
        (BASE + "priority = 5000\n", "key 'priority': priority must be between"),
        (BASE + "priority = 1.5\n", "key 'priority' must be a whole number"),
        (BASE + "max_attempts = 0\n", "key 'max_attempts': max-attempts"),
        (BASE + "queue = 'no spaces'\n", "key 'queue': queue name"),
        (BASE + "timeout = 0\n", "key 'timeout': timeout must be"),
        (BASE + "argv = ['x']\n", "key 'argv' is for exec jobs"),
        (BASE + "cwd = '/tmp'\n", "keys 'cwd' and 'env' go with an exec job's 'argv'"),
        ('[schedules.a]\nevery = 60\ntype = "exec"\n', "key 'argv' is missing"),
        ('[schedules.a]\nevery = 60\ntype = "exec"\nargv = []\n', "key 'argv': exec payload"),
        ('[schedules.a]\nevery = 60\ntype = "exec"\nargv = [1]\n', "'argv' must be a list of str"),
        (
            '[schedules.a]\nevery = 60\ntype = "exec"\nargv = ["x"]\nenv = { A = 1 }\n',
            "key 'env' must be a table of strings",
        ),
        (BASE + "payload = { at = 1979-05-27T07:32:00Z }\n", "key 'payload': payload must be"),
        ("[schedules.a\n", "not valid TOML"),
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (BASE + "payload = " + "[" * 300 + "]" * 300 + "\n", "nested more than 200"),
    ],
)
def test_every_error_is_one_line_naming_the_schedule_and_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(BadInput) as info:
        read_schedules(path, zone="UTC")
    message = info.value.message
    assert message.startswith(f"{path}: ") and says in message, message
    assert "\n" not in message and len(message) < 500


def test_a_huge_or_binary_file_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("# " + "x" * FILE_MAX_BYTES + "\n")
    with pytest.raises(BadInput, match="more than 1 MiB"):
        read_schedules(path)
    path.write_bytes(b"\xff\xfe[schedules]")
    with pytest.raises(BadInput, match="not UTF-8"):
        read_schedules(path)
    with pytest.raises(BadInput, match="cannot read"):
        read_schedules(tmp_path / "missing.toml")


def test_too_many_schedules_are_refused(tmp_path: Path) -> None:
    text = "".join(f'[schedules.s{n}]\nevery = 60\ntype = "T"\n' for n in range(1001))
    with pytest.raises(BadInput, match="at most 1000"):
        read_schedules(_file(tmp_path, text), zone="UTC")
