"""Write the frozen protocol samples: one encoded frame of every message, fixed values.

Run from the repository root with ``.venv/bin/python tests/data/make_samples.py``.
It writes ``tests/data/protocol_v1/NAME.frame`` for every sample that has no file
yet and leaves existing files alone: they are the wire format of released
versions, and ``tests/unit/test_protocol.py`` decodes them with the current code.
If that test fails, the change broke compatibility: fix the change, not the
files. Add a sample here (and its expected value in the test) when a message is
added. ``--force`` rewrites every file, for a deliberate ``PROTOCOL_VERSION`` bump
into a new directory only.

The values here are duplicated, on purpose, in the test module: the test must
not trust this script.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from semantica.models import CancelOutcome, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.protocol import (
    ApplySchedules,
    Cancel,
    CancelJob,
    Cancelled,
    Enqueue,
    Enqueued,
    ErrorReply,
    Events,
    Follow,
    FollowEnd,
    GetJob,
    GetLogs,
    GetMetrics,
    GetSchedule,
    GetStatus,
    GetTop,
    Heartbeat,
    Hello,
    HelloOk,
    JobEvent,
    JobFinished,
    JobList,
    JobLog,
    JobProcess,
    JobProgress,
    JobReply,
    JobsChanged,
    LimitQueue,
    ListJobs,
    ListQueues,
    ListSchedules,
    LogChunk,
    LogLines,
    Maintain,
    MaintenanceReport,
    MetricsReply,
    MinuteCounts,
    Ok,
    PauseQueue,
    PauseSchedule,
    PutSchedule,
    QueueList,
    QueueReply,
    RemoveSchedule,
    Renew,
    ResumeQueue,
    Retry,
    RunJob,
    RunSchedule,
    ScheduleDiff,
    ScheduleList,
    ScheduleReply,
    Shutdown,
    StatusReply,
    TopReply,
    Wait,
    WatchChanges,
    WorkerHello,
    WorkerInfo,
    WorkerTop,
    encode,
)
from semantica.schedules import Schedule, ScheduleChanges, ScheduleRun, ScheduleSpec

OUT = Path(__file__).resolve().parent / "protocol_v1"

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
T1 = datetime(2026, 3, 4, 5, 6, 9, tzinfo=UTC)
T2 = datetime(2026, 3, 4, 5, 7, 0, 500000, tzinfo=UTC)

JOB_FAILED = Job(
    id=42,
    type="INDEX_FILE",
    queue="index",
    subject="src/main.rs",
    generation=3,
    priority=5,
    state=JobState.FAILED,
    attempts=3,
    max_attempts=3,
    created_at=T0,
    started_at=T1,
    finished_at=T2,
    run_after=T0,
    result=None,
    error=JobError(kind="exception", message="ValueError: boom"),
    payload={"path": "src/main.rs"},
    timeout=60.0,
    worker_pid=None,
)

JOB_QUEUED = Job(
    id=43,
    type="exec",
    queue="default",
    subject=None,
    generation=None,
    priority=0,
    state=JobState.QUEUED,
    attempts=0,
    max_attempts=3,
    created_at=T0,
    started_at=None,
    finished_at=None,
    run_after=T2,
    payload={"argv": ["make", "-j4"]},
    waiting_for="run_after",
    deduplicated=True,
)

JOB_DONE = Job(
    id=44,
    type="INDEX_FILE",
    queue="index",
    subject="src/lib.rs",
    generation=1,
    priority=-3,
    state=JobState.DONE,
    attempts=1,
    max_attempts=5,
    created_at=T0,
    started_at=T1,
    finished_at=T2,
    run_after=T0,
    result={"symbols": 42, "files": ["a", "b"]},
    payload=[1, 2.5, "three", None, True],
)

SCHEDULE_SPEC = ScheduleSpec(
    name="nightly",
    job=JobSpec(type="exec", payload={"argv": ["backup.sh"]}, queue="backup", timeout=3600.0),
    cron="0 3 * * *",
    tz="Europe/Berlin",
    jitter=60.0,
    catch_up="none",
)
SCHEDULE = Schedule(
    name="often",
    job=JobSpec(type="INDEX_FILE", payload={"path": "src"}),
    every=900.0,
    paused=True,
    created_at=T0,
    updated_at=T1,
    last_slot=T0,
    last_job_id=42,
    fired=3,
    skipped=1,
    missed=2,
    runs=[
        ScheduleRun(slot=T0, outcome="fired", at=T1, job_id=42, state=JobState.FAILED),
        ScheduleRun(slot=T2, outcome="skipped", at=T2),
    ],
)

SAMPLES: dict[str, msgspec.Struct] = {
    "hello": Hello(version=1, token="s3cret-token", client="semctl 0.1.0"),
    "enqueue": Enqueue(
        jobs=[
            JobSpec(
                type="INDEX_FILE",
                payload={"path": "src/main.rs"},
                queue="index",
                subject="src/main.rs",
                generation=7,
                priority=5,
                max_attempts=4,
                timeout=30.0,
                at=T2,
                backoff=1.5,
                require_charging=True,
            ),
            JobSpec(type="exec", payload={"argv": ["make"]}, delay=2.5, require_idle=True),
        ],
        rid=1,
    ),
    "get": GetJob(id=42, rid=2),
    "list": ListJobs(
        state="FAILED", queue="index", type="INDEX_FILE", subject="x", limit=10, rid=3
    ),
    "wait": Wait(ids=[42, 43], timeout=60.0, rid=4),
    "logs": GetLogs(id=42, lines=20, rid=5),
    "status": GetStatus(rid=6),
    "shutdown": Shutdown(rid=7),
    "hello_ok": HelloOk(version=1, server_version="0.1.0", pid=4242),
    "error": ErrorReply(code="not_found", message="no job 99", rid=8),
    "enqueued": Enqueued(jobs=[JOB_QUEUED], rid=1),
    "job": JobReply(job=JOB_FAILED, rid=2),
    "jobs": JobList(jobs=[JOB_DONE, JOB_FAILED], rid=3),
    "log_lines": LogLines(lines=["indexing path=src/main.rs", "done ✓"], rid=5),
    "status_reply": StatusReply(
        version="0.1.0",
        uptime_s=12.5,
        db_bytes=65536,
        counts={"QUEUED": 1, "RUNNING": 1, "DONE": 7, "FAILED": 2},
        workers=[WorkerInfo(pid=100, state="busy", job=42), WorkerInfo(pid=101, state="idle")],
        pid=4242,
        home="/home/user/.local/state/semantica",
        rid=6,
    ),
    "ok": Ok(rid=7),
    "w_hello": WorkerHello(version=1, pid=100, types=["INDEX_FILE", "exec"]),
    "w_run": RunJob(
        lease=9,
        job_id=42,
        type="INDEX_FILE",
        payload=b'{"path":"src/main.rs"}',
        attempt=2,
        max_attempts=3,
        timeout=60.0,
    ),
    "w_log": JobLog(lease=9, lines=["indexing path=src/main.rs", ""]),
    "w_finished": JobFinished(lease=9, result=b'{"symbols":42}'),
    "w_finished_error": JobFinished(
        lease=10, error=JobError(kind="exit_status", message="exited with status 3"), permanent=True
    ),
    "cancel": Cancel(ids=[42, 43], rid=8),
    "retry": Retry(id=42, rid=9),
    "pause": PauseQueue(queue="index", rid=10),
    "resume": ResumeQueue(queue="index", rid=11),
    "limit": LimitQueue(queue="index", limit=2, rid=12),
    "queues": ListQueues(rid=13),
    "cancelled": Cancelled(
        results=[
            CancelOutcome(id=42, state=JobState.CANCELLED, message="cancelled"),
            CancelOutcome(id=43, state=JobState.DONE, message="already finished (DONE)"),
        ],
        rid=8,
    ),
    "queue": QueueReply(
        queue=QueueInfo(name="index", paused=True, limit=2, counts={"QUEUED": 3, "DONE": 1}),
        rid=10,
    ),
    "queue_list": QueueList(
        queues=[QueueInfo(name="default"), QueueInfo(name="index", limit=2)], rid=13
    ),
    "follow": Follow(id=42, rid=14),
    "events": Events(rid=15),
    "changes": WatchChanges(interval=0.5, rid=15),
    "jobs_changed": JobsChanged(seq=7, rid=15),
    "metrics": GetMetrics(rid=16),
    "top": GetTop(rid=17),
    "log_chunk": LogChunk(lines=["building", "done"], rid=14),
    "follow_end": FollowEnd(job=JOB_FAILED, rid=14),
    "job_event": JobEvent(
        event="failed",
        job_id=42,
        type="INDEX_FILE",
        state=JobState.FAILED,
        at=T2,
        queue="index",
        attempt=3,
        worker_pid=4242,
        error=JobError(kind="exception", message="ValueError: boom"),
        rid=15,
    ),
    "metrics_reply": MetricsReply(text="semantica_enqueued_total 1.0\n", rid=16),
    "top_reply": TopReply(
        version="0.1.0",
        uptime_s=12.5,
        workers=[
            WorkerTop(
                pid=100,
                state="busy",
                job=42,
                job_type="INDEX_FILE",
                running_s=1.5,
                cpu_percent=50.0,
                rss_bytes=30_000_000,
            ),
            WorkerTop(pid=101, state="idle"),
        ],
        queues=[QueueInfo(name="index", limit=2, counts={"QUEUED": 1})],
        finished_10s=3,
        finished_60s=20,
        supervisor_cpu_percent=0.5,
        supervisor_rss_bytes=45_000_000,
        failures=[JOB_FAILED],
        waiting=[],
        rid=17,
    ),
    "top_reply_minutes": TopReply(
        version="0.2.0",
        uptime_s=3600.0,
        workers=[],
        queues=[],
        finished_10s=0,
        finished_60s=4,
        supervisor_cpu_percent=0.5,
        supervisor_rss_bytes=45_000_000,
        failures=[],
        waiting=[],
        rid=26,
        per_minute=[
            MinuteCounts(start=datetime(2026, 3, 4, 5, 6, tzinfo=UTC), enqueued=7),
            MinuteCounts(
                start=datetime(2026, 3, 4, 5, 7, tzinfo=UTC), enqueued=1, finished=4, failed=1
            ),
        ],
    ),
    "w_beat": Heartbeat(lease=11),
    "maintenance": Maintain(force_vacuum=True, rid=18),
    "maintenance_report": MaintenanceReport(
        db_bytes_before=1_000_000,
        db_bytes_after=400_000,
        jobs_deleted=120,
        logs_deleted=118,
        vacuumed=True,
        integrity="ok",
        duration_ms=35.5,
        rid=18,
    ),
    "w_progress": JobProgress(lease=11, fraction=0.25, message="1 of 4 files"),
    "w_cancel": CancelJob(lease=11, kind="timeout", message="timed out after 60 s", grace=5.0),
    "w_process": JobProcess(lease=11, pgid=4242),
    "w_renew": Renew(for_s=5.0),
    "schedule_put": PutSchedule(spec=SCHEDULE_SPEC, replace=True, rid=19),
    "schedule_get": GetSchedule(name="nightly", runs=5, rid=20),
    "schedules": ListSchedules(rid=21),
    "schedule_pause": PauseSchedule(name="nightly", paused=False, rid=22),
    "schedule_remove": RemoveSchedule(name="nightly", rid=23),
    "schedule_run": RunSchedule(name="nightly", rid=24),
    "schedule_apply": ApplySchedules(specs=[SCHEDULE_SPEC], dry_run=True, rid=25),
    "schedule": ScheduleReply(schedule=SCHEDULE, created=True, rid=19),
    "schedule_list": ScheduleList(schedules=[SCHEDULE], rid=21),
    "schedule_changes": ScheduleDiff(
        changes=ScheduleChanges(created=["a"], updated=["b"], removed=["c"], unchanged=["d"]),
        rid=25,
    ),
}


def main(argv: list[str]) -> int:
    force = "--force" in argv
    OUT.mkdir(exist_ok=True)
    for name, msg in SAMPLES.items():
        path = OUT / f"{name}.frame"
        if path.exists() and not force:
            continue
        path.write_bytes(encode(msg))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
