"""status, list, show, queues, schedule list and schedule show drawn without rich are
exactly what rich draws from the same blocks: into a pipe byte for byte; on a terminal
the same text, in the same colours."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console, Group
from test_schedule_render import SUMMER, WINTER, _run, _schedule
from test_top_frame import _job

from semantica.control import plain, render, schedule_render
from semantica.control.terminal import NO_WRAP_WIDTH
from semantica.models import Dependency, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.protocol import NodeView, StatusReply, WorkerInfo
from semantica.schedules import Schedule

T0 = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)


def _jobs() -> list[Job]:
    later = T0 + timedelta(seconds=2.5)
    return [
        _job(1),
        _job(2, type="exec", payload={"argv": ["make"], "env": {"A": "1", "B": "2"}}),
        _job(3, state=JobState.DONE, started_at=T0, finished_at=later, result={"n": 42}),
        _job(
            4,
            state=JobState.FAILED,
            attempts=3,
            error=JobError("timeout", "took longer than 30 s [red]x[/red]"),
            started_at=T0,
            finished_at=later,
        ),
        _job(5, subject="src/main.rs", generation=7, priority=5, queue="q" * 40),
        _job(6, state=JobState.RUNNING, attempts=1, progress=0.5, progress_message="half"),
        _job(7, state=JobState.QUEUED, waiting_for="queue_paused"),
        _job(8, state=JobState.QUEUED, waiting_for="retry_backoff", run_after=later),
        _job(
            9,
            dependencies=[Dependency(id=3, mode="done", state=JobState.DONE)],
            dependents=[10, 11],
            dependents_count=5,
            waiting_for="dependency",
            waiting_on=[3],
        ),
        _job(10, schedule="nightly", slot=T0, require_idle=True, require_charging=True),
        _job(11, state=JobState.SUPERSEDED, superseded_by=12, finished_at=later),
        _job(12, type="tab\there", error=JobError("crash", "e" * 300), worker_pid=4242),
        _job(13, subject="名前", error=JobError("crash", "ünïcode")),
    ]


def _statuses() -> list[StatusReply]:
    counts = {"QUEUED": 3, "RUNNING": 1, "DONE": 100_000}
    workers = [WorkerInfo(pid=100, state="busy", job=6), WorkerInfo(pid=101, state="idle")]
    node = NodeView(
        id=1,
        name="a",
        host="host-a",
        pid=100,
        version="0.1.0",
        workers=2,
        started_at=T0,
        heartbeat_age_s=0.4,
        state="alive",
        this=True,
    )
    base: dict[str, Any] = {"version": "0.1.0", "uptime_s": 12.3, "db_bytes": 123_456}
    return [
        StatusReply(**base, counts=counts, workers=workers, pid=99, home="/tmp/h"),
        StatusReply(**base, counts={}, workers=[], draining=True, schedules=3, schedules_paused=1),
        StatusReply(
            **base,
            counts=counts,
            workers=[WorkerInfo(pid=100, state="busy", job=6, node="a")],
            store="postgresql://db/jobs",
            nodes=[node],
            waiting_on_dependencies=2,
        ),
        StatusReply(**base, counts=counts, workers=workers, home="/tmp/[bold]home"),
    ]


def _schedules() -> list[Schedule]:
    runs = [
        _run(12),
        _run(None, "skipped"),
        _run(9, state=None),
        _run(13, "manual", state=JobState.RUNNING, slot=SUMMER),
    ]
    exec_job = JobSpec(
        type="exec",
        payload={"argv": ["backup.sh"], "env": {"TOKEN": "s3cret"}},
        queue="backup",
        priority=5,
        timeout=7200.0,
        backoff=90.0,
        require_charging=True,
        require_idle=True,
        subject="home",
    )
    return [
        _schedule(),
        _schedule(job=exec_job, jitter=120.0, next_fire=WINTER.replace(minute=1), runs=runs),
        _schedule("tick", cron=None, every=1.0, tz="UTC", paused=True, next_fire=None),
        _schedule("[bold]x", job=JobSpec(type="T[red]", payload={"a": "[b]"}), runs=runs[:1]),
        _schedule("long", last_job_id=4, job=JobSpec(type="NOOP", payload={"p": "z" * 300})),
        _schedule("名前"),
    ]


def _views() -> list[list[plain.Block]]:
    jobs = _jobs()
    queues = [QueueInfo(name="default", counts={"QUEUED": 2}), QueueInfo(name="p", paused=True)]
    return [
        *(render.job_details_blocks(job) for job in jobs),
        render.job_table_blocks(jobs),
        render.job_table_blocks(jobs[:3]),
        render.job_table_blocks([]),
        *(render.status_blocks(reply) for reply in _statuses()),
        render.queue_table_blocks(queues),
        render.queue_table_blocks([]),
        *(schedule_render.schedule_details_blocks(schedule) for schedule in _schedules()),
        schedule_render.schedule_table_blocks(_schedules()),
        schedule_render.schedule_table_blocks(_schedules()[:3]),
        schedule_render.schedule_table_blocks([]),
    ]


def _rich(blocks: list[plain.Block], terminal: bool, width: int = NO_WRAP_WIDTH) -> str:
    colors: dict[str, Any] = {"color_system": "standard"} if terminal else {}
    console = Console(highlight=False, width=width, force_terminal=terminal, **colors)
    with console.capture() as captured:
        console.print(Group(*plain.to_rich(blocks)))
    return captured.get()


@pytest.fixture(autouse=True)
def _plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in plain._RICH_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


@pytest.mark.parametrize("index", range(len(_views())))
def test_into_a_pipe_the_lines_are_richs_byte_for_byte(index: int) -> None:
    blocks = _views()[index]
    drawn = plain.draw(blocks, None)
    expected = "".join(line.rstrip() + "\n" for line in _rich(blocks, False).splitlines())
    if drawn is None:  # text outside ASCII: rich measures it
        text = repr(blocks)
        assert any(ord(c) > 126 for c in text.encode().decode("unicode_escape", "ignore"))
        return
    assert "".join(line + "\n" for line in drawn) == expected


@pytest.mark.parametrize("index", range(len(_views())))
def test_on_a_wide_terminal_the_text_and_colours_are_richs(index: int) -> None:
    blocks = _views()[index]
    drawn = plain.draw(blocks, 400)
    if drawn is None:
        return
    expected = _rich(blocks, True, 400)
    assert _visible(drawn) == _visible(expected.splitlines())
    assert _coloured(drawn) == _coloured(expected.splitlines())


def _visible(lines: list[str]) -> list[str]:
    return [re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip() for line in lines]


def _coloured(lines: list[str]) -> list[list[tuple[str, str]]]:
    """Each line's non-blank runs with the SGR codes they are drawn in."""
    runs = []
    for line in lines:
        found = []
        for codes, text in re.findall(r"\x1b\[([0-9;]*)m([^\x1b]*)\x1b\[0m", line):
            if text.strip():
                found.append((text.strip(), codes))
        runs.append(found)
    return runs


def test_what_does_not_fit_a_terminal_is_left_to_rich() -> None:
    """A row wider than the terminal (rich cuts the error with an ellipsis), text outside
    ASCII, and a console rich sets up otherwise (NO_COLOR, TERM=dumb)."""
    wide = render.job_table_blocks([_job(1, error=JobError("crash", "y" * 200))])
    assert plain.draw(wide, 80) is None and plain.draw(wide, None) is not None
    assert plain.draw(render.job_table_blocks([_job(1, subject="x", type="名前")]), None) is None
    small = render.job_table_blocks([_job(1, type="NOOP")])
    assert plain.draw(small, 80) is not None


@pytest.mark.parametrize(("name", "value"), [("NO_COLOR", "1"), ("FORCE_COLOR", "1")])
def test_a_console_rich_sets_up_otherwise_is_left_to_rich(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    assert plain.draw(render.job_table_blocks([_job(1)]), None) is None


def test_a_dumb_terminal_is_left_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    blocks = render.job_table_blocks([_job(1)])
    assert plain.draw(blocks, 80) is None and plain.draw(blocks, None) is not None


def test_show_prints_without_rich_when_simple(capsys: pytest.CaptureFixture[str]) -> None:
    """(Into capsys, not a terminal.) The job data stays escaped, never markup."""
    render.job_details(_jobs()[3])
    out = capsys.readouterr().out
    assert "timeout: took longer than 30 s [red]x[/red]\n" in out
    assert out.startswith("job       4  INDEX_FILE_WITH_A_RATHER_LONG_NAME  FAILED\n")


def test_a_schedules_last_run_keeps_to_one_line_where_it_stands() -> None:
    """LAST is not the last column of ``schedule list``: on a narrow terminal rich cuts it
    with an ellipsis, as it cuts a job's error in ``list``."""
    blocks = schedule_render.schedule_table_blocks(_schedules()[:2])
    assert plain.draw(blocks, 80) is None  # too wide: rich draws it
    lines = _rich(blocks, True, 80).splitlines()
    assert len(lines) == 3 and "…" in lines[2]


def test_schedule_show_prints_without_rich_when_simple(capsys: pytest.CaptureFixture[str]) -> None:
    """(Into capsys, not a terminal.) The schedule's data stays escaped, never markup."""
    schedule_render.schedule_details(_schedules()[3])
    out = capsys.readouterr().out
    assert out.startswith("schedule   [bold]x\n")
    assert "job        T[red]  queue default  priority 0\n" in out


def test_schedule_views_drawn_simply_import_no_rich() -> None:
    code = (
        "import sys\n"
        "from datetime import UTC, datetime\n"
        "from semantica.control import schedule_render\n"
        "from semantica.models import JobSpec, JobState\n"
        "from semantica.schedules import Schedule, ScheduleRun\n"
        "t = datetime(2026, 12, 7, 2, tzinfo=UTC)\n"
        "run = ScheduleRun(slot=t, at=t, outcome='fired', job_id=1, state=JobState.DONE)\n"
        "s = Schedule(name='n', job=JobSpec(type='NOOP'), cron='0 3 * * *', tz='UTC', "
        "next_slot=t, next_fire=t, runs=[run])\n"
        "schedule_render.schedule_table([s])\n"
        "schedule_render.schedule_details(s)\n"
        "print(sorted({'rich', 'typer'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[-1] == "[]", out.stderr
