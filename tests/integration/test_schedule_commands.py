"""Schedules end to end: the real supervisor, the real ``semctl schedule`` and the clients.

An ``--every 1s`` schedule makes one job per slot, each carrying its schedule and
slot; list, show, pause, resume, run and remove answer with ``--json``; a schedules
file is applied dry, then for real, then edited (and ``status`` and ``top`` show
the schedules); bad input of every kind is one line and changes nothing; the
Python clients' verbs; and the core flow on PostgreSQL.

Schedules here fire every second, so the file takes seconds, not minutes. Waiting
is polling with a deadline (through the Python client, whose calls cost
milliseconds where a ``semctl`` run costs a Python start). Whether a slot gives a
job at all depends on the machine's load (a slot decided late is counted missed,
one whose previous job is still live is skipped), so the tests check the
accounting of every slot rather than that none was missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from harness import Daemon

from semantica import AsyncClient, Client, JobState
from semantica.errors import BadInput
from semantica.schedules import NoSuchSchedule

pytestmark = pytest.mark.slow

#: Bounds a failure only: a 1 s schedule fires within a second or two when it works.
DEADLINE = 20.0


def until(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def ok(daemon: Daemon, *args: str) -> Any:
    """Run ``semctl ARGS --json``; exit 0 and nothing on stderr; its JSON."""
    at = args.index("--") if "--" in args else len(args)  # (after it, exec's argv)
    result = daemon.semctl(*args[:at], "--json", *args[at:])
    assert result.code == 0, (args, result.err)
    assert result.err == ""
    return result.json()


def refused(daemon: Daemon, code: int, *args: str) -> str:
    """Run ``semctl ARGS``: exit ``code``, nothing on stdout, one line on stderr; the line."""
    result = daemon.semctl(*args)
    assert result.code == code, (args, result.out, result.err)
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("semctl: "), result.err
    return lines[0]


def when(text: str | None) -> float:
    assert text is not None
    return datetime.fromisoformat(text).timestamp()


def job_ids(client: Client, name: str) -> list[int]:
    """The jobs the slots of ``name`` made, oldest first (its runs that fired)."""
    runs = client.get_schedule(name, runs=100).runs
    return sorted(run.job_id for run in runs if run.outcome == "fired" and run.job_id)


def _paired(client: Client) -> bool:
    """Whether two of tick's jobs are for slots one second apart."""
    runs = client.get_schedule("tick", runs=100).runs
    slots = sorted(run.slot.timestamp() for run in runs if run.outcome == "fired")
    return any(b - a == 1 for a, b in pairwise(slots))


def check_slots(
    daemon: Daemon, name: str, paused: tuple[float, float] | None = None
) -> list[float]:
    """Every job ``name`` fired (the latest read with ``semctl show --json``, the others
    through the client, for speed): each carries the schedule and a slot of its own, a
    whole second; between two of them, every slot is accounted for as skipped or
    missed, but those of the ``paused`` time span (which give nothing and are not
    counted). The slots, oldest first."""
    schedule = ok(daemon, "schedule", "show", name, "--runs", "100")
    fired = sorted(
        (run for run in schedule["runs"] if run["outcome"] == "fired"),
        key=lambda run: run["slot"],
    )
    assert fired and len(fired) == schedule["fired"]
    with daemon.client() as client:
        jobs = [client.get(run["job_id"]) for run in fired]
    assert all(job.schedule == name for job in jobs)
    slots = [job.slot.timestamp() if job.slot else 0.0 for job in jobs]
    assert slots == [when(run["slot"]) for run in fired]
    shown = ok(daemon, "show", str(fired[-1]["job_id"]))
    assert (shown["schedule"], shown["slot"]) == (name, fired[-1]["slot"])
    assert all(slot == int(slot) for slot in slots)
    assert len(set(slots)) == len(slots), f"a slot made two jobs: {slots}"
    gone = [s for a, b in pairwise(slots) for s in range(int(a) + 1, int(b))]
    if paused is not None:
        gone = [s for s in gone if not paused[0] <= s <= paused[1]]
    skipped = sum(1 for run in schedule["runs"] if run["outcome"] == "skipped")
    assert len(gone) <= skipped + schedule["missed"], (slots, gone, schedule)
    return slots


def test_an_every_second_schedule_from_add_to_remove(daemon: Daemon) -> None:
    """``schedule add --every 1s``: a job per slot, each with its schedule and slot;
    list and show; paused it makes none, resumed it makes them again; ``run`` makes
    one at once, recorded as manual; removed it is gone, and its jobs stay."""
    added = ok(
        daemon, "schedule", "add", "tick", "--every", "1s", "--tz", "UTC", "exec", "--", "true"
    )
    assert (added["name"], added["every"], added["tz"], added["paused"]) == (
        "tick",
        1.0,
        "UTC",
        False,
    )
    assert added["job"]["type"] == "exec" and added["job"]["payload"]["argv"] == ["true"]
    with daemon.client() as client:
        # Three jobs, two of them for consecutive slots (a slot decided late on a busy
        # machine is missed, and counted: check_slots accounts for it).
        until(
            "two jobs a second apart", lambda: len(job_ids(client, "tick")) >= 3 and _paired(client)
        )
    slots = check_slots(daemon, "tick")
    assert any(b - a == 1 for a, b in pairwise(slots)), slots

    listed = ok(daemon, "schedule", "list")
    assert [s["name"] for s in listed] == ["tick"]
    assert listed[0]["runs"][0]["outcome"] in ("fired", "skipped")
    assert when(listed[0]["next_fire"]) > slots[-1]

    pausing = time.time()
    paused = ok(daemon, "schedule", "pause", "tick")
    assert paused["paused"] is True and paused["next_fire"] is None
    with daemon.client() as client:
        made = len(job_ids(client, "tick"))
        total = len(client.list(limit=1000))
        # Nothing to poll for: a paused schedule shows itself by what does not happen.
        # Two slots pass (the one bounded wait of this file).
        resting = time.time()
        until("two slots", lambda: time.time() > resting + 2.2, timeout=5)
        assert len(job_ids(client, "tick")) == made
        assert len(client.list(limit=1000)) == total
        assert client.get_schedule("tick").paused
    assert ok(daemon, "status")["schedules"] == {"total": 1, "paused": 1}

    resumed = ok(daemon, "schedule", "resume", "tick")
    assert resumed["paused"] is False and when(resumed["next_fire"]) > resting + 2
    resumed_at = time.time()
    with daemon.client() as client:
        until("a job after resume", lambda: len(job_ids(client, "tick")) > made)
    slots = check_slots(daemon, "tick", paused=(pausing - 1, resumed_at))
    assert slots[made] > resting + 2  # none for the slots while paused

    run = daemon.semctl("schedule", "run", "tick")
    assert run.code == 0, run.err
    manual = ok(daemon, "show", run.out.strip())
    assert (manual["schedule"], manual["slot"]) == ("tick", None)
    shown = ok(daemon, "schedule", "show", "tick")
    assert {"outcome": "manual", "job_id": manual["id"]}.items() <= next(
        r for r in shown["runs"] if r["outcome"] == "manual"
    ).items()
    assert shown["job"]["payload"]["argv"] == ["true"]

    assert ok(daemon, "schedule", "remove", "tick") == {"removed": "tick"}
    assert ok(daemon, "schedule", "list") == []
    refused(daemon, 5, "schedule", "show", "tick")
    with daemon.client() as client:
        job = client.wait(manual["id"], timeout=DEADLINE)
        assert job.state == JobState.DONE and job.schedule == "tick"  # its jobs stay


FILE = """\
[schedules.nightly]
cron = "0 3 * * *"
tz = "Europe/Berlin"
type = "exec"
argv = ["backup.sh"]
timeout = "2h"

[schedules.hourly]
every = "1h"
type = "NOOP"

[schedules.often]
every = "15m"
type = "NOOP"
queue = "index"
"""

EDITED = """\
[schedules.nightly]
cron = "30 3 * * *"
tz = "Europe/Berlin"
type = "exec"
argv = ["backup.sh"]
timeout = "2h"

[schedules.hourly]
every = "1h"
type = "NOOP"

[schedules.weekly]
cron = "0 4 * * 0"
tz = "UTC"
type = "NOOP"
"""


def test_apply_a_file_dry_then_for_real_then_edited(daemon: Daemon, tmp_path: Path) -> None:
    """``--dry-run`` prints the diff and changes nothing; then the file is applied; an
    edited file updates one, removes one, adds one, and leaves the rest alone."""
    path = tmp_path / "schedules.toml"
    path.write_text(FILE)
    before = ok(daemon, "schedule", "add", "old", "--every", "1h", "NOOP")
    dry = daemon.semctl("schedule", "apply", str(path), "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines() == [
        "+ hourly  every 1h",
        "+ nightly  cron 0 3 * * * Europe/Berlin",
        "+ often  every 15m",
        "- old",
        "dry run: nothing was changed",
    ]
    assert [s["name"] for s in ok(daemon, "schedule", "list")] == ["old"]
    assert ok(daemon, "schedule", "show", "old")["updated_at"] == before["updated_at"]

    applied = ok(daemon, "schedule", "apply", str(path))
    assert applied == {
        "created": ["hourly", "nightly", "often"],
        "updated": [],
        "removed": ["old"],
        "unchanged": [],
        "dry_run": False,
    }
    listed = {s["name"]: s for s in ok(daemon, "schedule", "list")}
    assert sorted(listed) == ["hourly", "nightly", "often"]
    assert (listed["nightly"]["cron"], listed["nightly"]["tz"]) == ("0 3 * * *", "Europe/Berlin")
    assert listed["nightly"]["job"]["timeout"] == 7200
    assert listed["often"]["job"]["queue"] == "index"
    assert ok(daemon, "schedule", "apply", str(path), "--dry-run")["unchanged"] == sorted(listed)
    assert "schedules: 3" in daemon.semctl("status").out.splitlines()
    frame = daemon.semctl("top", "--once").out.splitlines()
    at = next(i for i, line in enumerate(frame) if line.startswith("SCHEDULE"))
    # The schedules due next (their order depends on the time of day: often and hourly
    # are both due at the top of the hour).
    assert sorted(line.split()[0] for line in frame[at + 1 : at + 4]) == sorted(listed)

    path.write_text(EDITED)
    edited = daemon.semctl("schedule", "apply", str(path))
    assert edited.code == 0, edited.err
    assert edited.out.splitlines() == [
        "+ weekly  cron 0 4 * * 0 UTC",
        "~ nightly  cron 30 3 * * * Europe/Berlin",
        "- often",
        "= 1 unchanged",
    ]
    listed = {s["name"]: s for s in ok(daemon, "schedule", "list")}
    assert sorted(listed) == ["hourly", "nightly", "weekly"]
    assert listed["nightly"]["cron"] == "30 3 * * *"
    assert listed["nightly"]["next_fire"].endswith(":30:00Z")  # 03:30 in Berlin is :30 UTC


def test_a_dry_run_after_an_edit_names_the_keys_it_changes(daemon: Daemon, tmp_path: Path) -> None:
    """Edit a file's schedule (its time, its payload, its queue), dry-run it: the ``~``
    line says which keys differ, even those that ``when`` does not show."""
    path = tmp_path / "schedules.toml"
    path.write_text('[schedules.backup]\ncron = "30 2 * * *"\ntz = "UTC"\ntype = "NOOP"\n')
    ok(daemon, "schedule", "apply", str(path))
    path.write_text(
        '[schedules.backup]\ncron = "15 3 * * *"\ntz = "UTC"\ntype = "NOOP"\n'
        'payload = { dir = "/mnt/b" }\nqueue = "backup"\n'
    )
    dry = daemon.semctl("schedule", "apply", str(path), "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.splitlines() == [
        "~ backup  cron 15 3 * * * UTC  (changes cron, payload, queue)",
        "dry run: nothing was changed",
    ]
    assert ok(daemon, "schedule", "show", "backup")["cron"] == "30 2 * * *"


BAD_FILES = {
    "not TOML": "[schedules.x\n",
    "a wrong type": '[schedules.x]\nevery = ["1h"]\ntype = "NOOP"\n',
    "deep nesting": "[schedules.x]\ntype = 'NOOP'\npayload = " + "[" * 3000 + "]" * 3000 + "\n",
}
# (Every other error a file can hold is in tests/unit/test_schedule_input.py: these
# check that semctl reports them as one line and sends nothing.)


def test_bad_input_is_one_line_and_changes_nothing(daemon: Daemon, tmp_path: Path) -> None:
    """A bad cron expression, an unknown zone, a bad duration, a name taken without
    ``--replace``, an unknown name (exit 5), a bad schedules file: one line each, and
    neither the schedules nor the jobs change."""
    ok(daemon, "schedule", "add", "kept", "--every", "1h", "NOOP")
    with daemon.client() as client:
        schedules, jobs = client.schedules(), client.list(limit=1000)
    line = refused(daemon, 2, "schedule", "add", "x", "--cron", "61 * * * *", "NOOP")
    assert "cron" in line
    line = refused(
        daemon, 2, "schedule", "add", "x", "--every", "1h", "--tz", "Mars/Olympus", "NOOP"
    )
    assert "Mars/Olympus" in line
    refused(daemon, 2, "schedule", "add", "x", "--every", "soon", "NOOP")
    refused(daemon, 2, "schedule", "add", "x", "--every", "1h", "NO_SUCH_TYPE")
    line = refused(daemon, 2, "schedule", "add", "kept", "--every", "2h", "NOOP")
    assert "--replace" in line
    for verb in ("show", "pause", "resume", "remove", "run"):
        assert "no schedule 'gone'" in refused(daemon, 5, "schedule", verb, "gone")
    for what, text in BAD_FILES.items():
        path = tmp_path / f"{what.replace(' ', '_')}.toml"
        path.write_text(text)
        line = refused(daemon, 2, "schedule", "apply", str(path))
        assert str(path) in line, (what, line)
    with daemon.client() as client:
        assert client.schedules() == schedules
        assert client.list(limit=1000) == jobs
    replaced = ok(daemon, "schedule", "add", "kept", "--every", "2h", "--replace", "NOOP")
    assert replaced["every"] == 7200


def test_the_python_clients_schedule_verbs(daemon: Daemon) -> None:
    """Client: schedule, schedules, get_schedule, pause, resume, run, apply, remove;
    bad input raises before anything is sent, an unknown name NoSuchSchedule."""
    with daemon.client() as client:
        made = client.schedule("ping", "NOOP", every=1, tz="UTC", priority=5)
        assert (made.name, made.every, made.job.priority) == ("ping", 1.0, 5)
        with pytest.raises(BadInput, match=r"replace=True"):  # (Python's word, not only semctl's)
            client.schedule("ping", "NOOP", every="1s")  # exists, no replace
        with pytest.raises(BadInput):
            client.schedule("bad", "NOOP", cron="every tuesday")
        fired = until("a fired job", lambda: job_ids(client, "ping"))
        job = client.wait(fired[0], timeout=DEADLINE)
        assert job.schedule == "ping" and job.slot is not None
        assert job.slot.timestamp() == int(job.slot.timestamp())

        assert client.pause_schedule("ping").paused
        assert [s.name for s in client.schedules()] == ["ping"]
        manual = client.run_schedule("ping")
        assert (manual.schedule, manual.slot) == ("ping", None)
        assert client.get_schedule("ping").runs[0].job_id == manual.id
        assert not client.resume_schedule("ping").paused

        specs = [
            {"name": "ping", "type": "NOOP", "every": "1h", "tz": "UTC"},
            {"name": "daily", "type": "NOOP", "cron": "0 6 * * *", "tz": "Asia/Tokyo"},
        ]
        dry = client.apply_schedules(specs, dry_run=True)
        assert (dry.created, dry.updated, dry.dry_run) == (["daily"], ["ping"], True)
        assert client.get_schedule("ping").every == 1.0
        done = client.apply_schedules(specs)
        assert (done.created, done.updated, done.dry_run) == (["daily"], ["ping"], False)
        assert client.get_schedule("daily").next_fire is not None

        client.remove_schedule("daily")
        with pytest.raises(NoSuchSchedule):
            client.remove_schedule("daily")
        with pytest.raises(NoSuchSchedule):
            client.get_schedule("daily")
        assert [s.name for s in client.schedules()] == ["ping"]


async def test_the_async_clients_schedule_verbs(daemon: Daemon) -> None:
    """AsyncClient has the same verbs, as coroutines."""
    async with AsyncClient(home=daemon.home) as client:
        made = await client.schedule("later", "NOOP", cron="0 0 1 1 *", tz="UTC", paused=True)
        assert made.paused and made.next_fire is None
        assert [s.name for s in await client.schedules()] == ["later"]
        job = await client.run_schedule("later")
        assert job.schedule == "later"
        assert (await client.get_schedule("later")).runs[0].outcome == "manual"
        assert not (await client.resume_schedule("later")).paused
        assert (await client.pause_schedule("later")).paused
        changes = await client.apply_schedules([], dry_run=True)
        assert changes.removed == ["later"]
        await client.remove_schedule("later")
        assert await client.schedules() == []


def test_the_core_flow_on_postgresql(
    make_daemon: Callable[..., Daemon], pg_database: str, tmp_path: Path
) -> None:
    """On the PostgreSQL store: an every-second schedule fires one job per slot with
    its schedule and slot; pause, run, apply and remove answer as on SQLite."""
    daemon = make_daemon("--store", pg_database)
    ok(daemon, "schedule", "add", "tick", "--every", "1s", "exec", "--", "true")
    with daemon.client() as client:
        until("two jobs", lambda: len(job_ids(client, "tick")) >= 2)
    check_slots(daemon, "tick")
    assert ok(daemon, "schedule", "pause", "tick")["paused"] is True
    manual = ok(daemon, "schedule", "run", "tick")
    assert (manual["schedule"], manual["slot"]) == ("tick", None)
    path = tmp_path / "schedules.toml"
    path.write_text('[schedules.hourly]\nevery = "1h"\ntype = "NOOP"\n')
    assert ok(daemon, "schedule", "apply", str(path), "--dry-run")["removed"] == ["tick"]
    with daemon.client() as client:
        assert [s.name for s in client.schedules()] == ["tick"]
    assert ok(daemon, "schedule", "apply", str(path))["created"] == ["hourly"]
    assert [s["name"] for s in ok(daemon, "schedule", "list")] == ["hourly"]
    assert ok(daemon, "schedule", "remove", "hourly") == {"removed": "hourly"}
    refused(daemon, 5, "schedule", "show", "hourly")
    assert ok(daemon, "status")["schedules"] == {"total": 0, "paused": 0}
