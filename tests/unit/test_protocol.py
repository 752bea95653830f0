"""The wire protocol: message round trips, framing, the size cap, bad input, frozen samples."""

from __future__ import annotations

import random
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semantica import protocol
from semantica.errors import FrameTooLarge, ProtocolError
from semantica.models import CancelOutcome, Job, JobError, JobSpec, JobState, QueueInfo
from semantica.protocol import (
    HEADER,
    MAX_FRAME,
    ApplySchedules,
    Cancel,
    CancelJob,
    Cancelled,
    ControlReply,
    ControlRequest,
    Enqueue,
    Enqueued,
    ErrorReply,
    Events,
    Follow,
    FollowEnd,
    FrameDecoder,
    FromWorker,
    GetJob,
    GetLogs,
    GetMetrics,
    GetSchedule,
    GetStatus,
    GetTop,
    GiveBack,
    GivenBack,
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
    ToWorker,
    Wait,
    WatchChanges,
    WorkerHello,
    WorkerInfo,
    WorkerTop,
    encode,
)
from semantica.schedules import Schedule, ScheduleChanges, ScheduleRun, ScheduleSpec

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "protocol_v1"

# The expected values of the frozen samples. They repeat tests/data/make_samples.py
# on purpose: this module must not trust the generator.
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

# name -> (the union its channel decodes with, the message)
EXPECTED: dict[str, tuple[Any, msgspec.Struct]] = {
    "hello": (ControlRequest, Hello(version=1, token="s3cret-token", client="semctl 0.1.0")),
    "enqueue": (
        ControlRequest,
        Enqueue(
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
    ),
    "get": (ControlRequest, GetJob(id=42, rid=2)),
    "list": (
        ControlRequest,
        ListJobs(state="FAILED", queue="index", type="INDEX_FILE", subject="x", limit=10, rid=3),
    ),
    "wait": (ControlRequest, Wait(ids=[42, 43], timeout=60.0, rid=4)),
    "logs": (ControlRequest, GetLogs(id=42, lines=20, rid=5)),
    "status": (ControlRequest, GetStatus(rid=6)),
    "shutdown": (ControlRequest, Shutdown(rid=7)),
    "hello_ok": (ControlReply, HelloOk(version=1, server_version="0.1.0", pid=4242)),
    "error": (ControlReply, ErrorReply(code="not_found", message="no job 99", rid=8)),
    "enqueued": (ControlReply, Enqueued(jobs=[JOB_QUEUED], rid=1)),
    "job": (ControlReply, JobReply(job=JOB_FAILED, rid=2)),
    "jobs": (ControlReply, JobList(jobs=[JOB_DONE, JOB_FAILED], rid=3)),
    "log_lines": (ControlReply, LogLines(lines=["indexing path=src/main.rs", "done ✓"], rid=5)),
    "status_reply": (
        ControlReply,
        StatusReply(
            version="0.1.0",
            uptime_s=12.5,
            db_bytes=65536,
            counts={"QUEUED": 1, "RUNNING": 1, "DONE": 7, "FAILED": 2},
            workers=[WorkerInfo(pid=100, state="busy", job=42), WorkerInfo(pid=101, state="idle")],
            pid=4242,
            home="/home/user/.local/state/semantica",
            rid=6,
        ),
    ),
    "ok": (ControlReply, Ok(rid=7)),
    "w_hello": (FromWorker, WorkerHello(version=1, pid=100, types=["INDEX_FILE", "exec"])),
    "w_run": (
        ToWorker,
        RunJob(
            lease=9,
            job_id=42,
            type="INDEX_FILE",
            payload=b'{"path":"src/main.rs"}',
            attempt=2,
            max_attempts=3,
            timeout=60.0,
        ),
    ),
    "w_log": (FromWorker, JobLog(lease=9, lines=["indexing path=src/main.rs", ""])),
    "w_finished": (FromWorker, JobFinished(lease=9, result=b'{"symbols":42}')),
    "w_finished_error": (
        FromWorker,
        JobFinished(
            lease=10,
            error=JobError(kind="exit_status", message="exited with status 3"),
            permanent=True,
        ),
    ),
    "cancel": (ControlRequest, Cancel(ids=[42, 43], rid=8)),
    "retry": (ControlRequest, Retry(id=42, rid=9)),
    "pause": (ControlRequest, PauseQueue(queue="index", rid=10)),
    "resume": (ControlRequest, ResumeQueue(queue="index", rid=11)),
    "limit": (ControlRequest, LimitQueue(queue="index", limit=2, rid=12)),
    "queues": (ControlRequest, ListQueues(rid=13)),
    "cancelled": (
        ControlReply,
        Cancelled(
            results=[
                CancelOutcome(id=42, state=JobState.CANCELLED, message="cancelled"),
                CancelOutcome(id=43, state=JobState.DONE, message="already finished (DONE)"),
            ],
            rid=8,
        ),
    ),
    "queue": (
        ControlReply,
        QueueReply(
            queue=QueueInfo(name="index", paused=True, limit=2, counts={"QUEUED": 3, "DONE": 1}),
            rid=10,
        ),
    ),
    "queue_list": (
        ControlReply,
        QueueList(queues=[QueueInfo(name="default"), QueueInfo(name="index", limit=2)], rid=13),
    ),
    "follow": (ControlRequest, Follow(id=42, rid=14)),
    "events": (ControlRequest, Events(rid=15)),
    "changes": (ControlRequest, WatchChanges(interval=0.5, rid=15)),
    "jobs_changed": (ControlReply, JobsChanged(seq=7, rid=15)),
    "metrics": (ControlRequest, GetMetrics(rid=16)),
    "top": (ControlRequest, GetTop(rid=17)),
    "log_chunk": (ControlReply, LogChunk(lines=["building", "done"], rid=14)),
    "follow_end": (ControlReply, FollowEnd(job=JOB_FAILED, rid=14)),
    "job_event": (
        ControlReply,
        JobEvent(
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
    ),
    "metrics_reply": (ControlReply, MetricsReply(text="semantica_enqueued_total 1.0\n", rid=16)),
    "top_reply": (
        ControlReply,
        TopReply(
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
    ),
    "top_reply_minutes": (
        ControlReply,
        TopReply(
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
    ),
    "w_beat": (FromWorker, Heartbeat(lease=11)),
    "maintenance": (ControlRequest, Maintain(force_vacuum=True, rid=18)),
    "maintenance_report": (
        ControlReply,
        MaintenanceReport(
            db_bytes_before=1_000_000,
            db_bytes_after=400_000,
            jobs_deleted=120,
            logs_deleted=118,
            vacuumed=True,
            integrity="ok",
            duration_ms=35.5,
            rid=18,
        ),
    ),
    "w_progress": (FromWorker, JobProgress(lease=11, fraction=0.25, message="1 of 4 files")),
    "w_cancel": (
        ToWorker,
        CancelJob(lease=11, kind="timeout", message="timed out after 60 s", grace=5.0),
    ),
    "w_process": (FromWorker, JobProcess(lease=11, pgid=4242)),
    "w_give_back": (ToWorker, GiveBack(leases=[12, 13])),
    "w_renew": (ToWorker, Renew(for_s=5.0)),
    "w_given_back": (FromWorker, GivenBack(leases=[13])),
    "w_finished_timed": (
        FromWorker,
        JobFinished(lease=12, result=b"null", run_s=0.000125, started_at=1_795_000_000.25),
    ),
    "schedule_put": (ControlRequest, PutSchedule(spec=SCHEDULE_SPEC, replace=True, rid=19)),
    "schedule_get": (ControlRequest, GetSchedule(name="nightly", runs=5, rid=20)),
    "schedules": (ControlRequest, ListSchedules(rid=21)),
    "schedule_pause": (ControlRequest, PauseSchedule(name="nightly", paused=False, rid=22)),
    "schedule_remove": (ControlRequest, RemoveSchedule(name="nightly", rid=23)),
    "schedule_run": (ControlRequest, RunSchedule(name="nightly", rid=24)),
    "schedule_apply": (ControlRequest, ApplySchedules(specs=[SCHEDULE_SPEC], dry_run=True, rid=25)),
    "schedule": (ControlReply, ScheduleReply(schedule=SCHEDULE, created=True, rid=19)),
    "schedule_list": (ControlReply, ScheduleList(schedules=[SCHEDULE], rid=21)),
    "schedule_changes": (
        ControlReply,
        ScheduleDiff(
            changes=ScheduleChanges(created=["a"], updated=["b"], removed=["c"], unchanged=["d"]),
            rid=25,
        ),
    ),
}

UNIONS: dict[str, Any] = {
    "ControlRequest": ControlRequest,
    "ControlReply": ControlReply,
    "ToWorker": ToWorker,
    "FromWorker": FromWorker,
}


def _members(union: Any) -> set[type]:
    return set(typing.get_args(union)) or {union}


def decode_all(union: Any, data: bytes, max_frame: int = MAX_FRAME) -> list[Any]:
    decoder = FrameDecoder(union, max_frame)
    decoder.feed(data)
    return list(decoder.messages())


# ---------------------------------------------------------------- round trips


def test_every_message_class_has_a_sample() -> None:
    """Every message of every channel is covered by a round trip and a frozen sample."""
    all_classes = set().union(*(_members(u) for u in UNIONS.values()))
    sampled = {type(msg) for _, msg in EXPECTED.values()}
    assert all_classes == sampled


def test_samples_use_the_right_union() -> None:
    """Each sample is decoded with the union of the channel its message travels on."""
    for name, (union, msg) in EXPECTED.items():
        assert type(msg) in _members(union), name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_round_trip(name: str) -> None:
    """A message encoded into a frame decodes to an equal message of the same class."""
    union, msg = EXPECTED[name]
    [decoded] = decode_all(union, encode(msg))
    assert type(decoded) is type(msg)
    assert decoded == msg


def test_frame_fed_one_byte_at_a_time() -> None:
    """A frame split into single bytes decodes once its last byte arrives, not before."""
    _, msg = EXPECTED["enqueue"]
    data = encode(msg)
    decoder = FrameDecoder(ControlRequest)
    for i, byte in enumerate(data):
        decoder.feed(bytes([byte]))
        got = list(decoder.messages())
        if i < len(data) - 1:
            assert got == []
            assert decoder.pending == i + 1
        else:
            assert got == [msg]
    assert decoder.pending == 0


def test_two_frames_in_one_chunk() -> None:
    """Two frames arriving in one read both decode, in order."""
    a, b = GetJob(id=1, rid=1), Wait(ids=[1, 2], rid=2)
    assert decode_all(ControlRequest, encode(a) + encode(b)) == [a, b]


def test_trailing_partial_frame_is_kept() -> None:
    """A complete frame followed by half of the next yields the first and keeps the rest."""
    a, b = GetJob(id=1, rid=1), GetJob(id=2, rid=2)
    second = encode(b)
    decoder = FrameDecoder(ControlRequest)
    decoder.feed(encode(a) + second[:5])
    assert list(decoder.messages()) == [a]
    assert decoder.pending == 5
    decoder.feed(second[5:])
    assert list(decoder.messages()) == [b]


def test_frame_header_is_big_endian_length() -> None:
    """A frame is a 4-byte big-endian body length followed by the msgpack body."""
    msg = Ok(rid=3)
    frame = encode(msg)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    assert msgspec.msgpack.decode(frame[4:]) == {"t": "ok", "rid": 3}


# ---------------------------------------------------------------- size cap


def test_oversized_header_refused_before_body() -> None:
    """A header announcing more than the cap is refused as soon as its 4 bytes arrive."""
    decoder = FrameDecoder(ControlRequest, max_frame=16)
    header = HEADER.pack(17)
    for byte in header[:3]:
        decoder.feed(bytes([byte]))
        assert list(decoder.messages()) == []
    decoder.feed(header[3:])
    with pytest.raises(FrameTooLarge, match="17"):
        list(decoder.messages())


def test_frame_of_exactly_the_cap_is_accepted() -> None:
    """A body exactly as large as the cap is still accepted."""
    msg = GetJob(id=7)
    frame = encode(msg)
    assert decode_all(ControlRequest, frame, max_frame=len(frame) - 4) == [msg]
    with pytest.raises(FrameTooLarge):
        decode_all(ControlRequest, frame, max_frame=len(frame) - 5)


def test_the_first_frame_has_its_own_cap_and_the_rest_the_usual_one() -> None:
    """With ``first_max``, only the first frame is held to it (a hello)."""
    small, big = GetJob(id=7), GetJob(id=1 << 40)
    small_frame, big_frame = encode(small), encode(big)
    first_max = len(small_frame) - 4
    assert len(big_frame) - 4 > first_max
    decoder = FrameDecoder(ControlRequest, max_frame=1024, first_max=first_max)
    decoder.feed(small_frame + big_frame)
    assert list(decoder.messages()) == [small, big]
    decoder = FrameDecoder(ControlRequest, max_frame=1024, first_max=first_max)
    decoder.feed(big_frame)
    with pytest.raises(FrameTooLarge, match=f"exceeds the {first_max}-byte limit"):
        list(decoder.messages())


def test_frame_too_large_is_a_protocol_error() -> None:
    """Callers that handle ProtocolError also handle an oversized frame."""
    assert issubclass(FrameTooLarge, ProtocolError)


# ---------------------------------------------------------------- bad bodies


def _frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


_rng = random.Random(1234)
GARBAGE: dict[str, bytes] = {
    "random bytes": bytes(_rng.randrange(256) for _ in range(64)),
    "empty body": b"",
    "truncated msgpack": msgspec.msgpack.encode({"t": "get", "id": 1})[:-1],
    "trailing bytes": msgspec.msgpack.encode({"t": "get", "id": 1}) + b"\x00",
    "an array": msgspec.msgpack.encode([1, 2, 3]),
    "an integer": msgspec.msgpack.encode(5),
    "a map without tag": msgspec.msgpack.encode({"id": 1}),
    "missing field": msgspec.msgpack.encode({"t": "get"}),
    "wrong field type": msgspec.msgpack.encode({"t": "get", "id": "one"}),
    "wrong nested type": msgspec.msgpack.encode({"t": "enqueue", "jobs": [{"type": 5}]}),
    "unknown tag": msgspec.msgpack.encode({"t": "launch_missiles", "rid": 1}),
    "tag of another channel": msgspec.msgpack.encode({"t": "ok", "rid": 1}),
    "tag not a string": msgspec.msgpack.encode({"t": 1}),
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_bad_bodies_raise_protocol_error(body: bytes) -> None:
    """A frame whose body is not a valid request raises ProtocolError, nothing else."""
    with pytest.raises(ProtocolError):
        decode_all(ControlRequest, _frame(body))


def test_bad_frame_does_not_poison_the_stream() -> None:
    """After a bad frame is reported, the next good frame still decodes."""
    good = GetJob(id=3, rid=1)
    decoder = FrameDecoder(ControlRequest)
    decoder.feed(_frame(GARBAGE["unknown tag"]) + encode(good))
    with pytest.raises(ProtocolError):
        list(decoder.messages())
    assert list(decoder.messages()) == [good]


def test_worker_message_refused_on_control_channel() -> None:
    """A worker-channel message sent to the control socket is refused, not obeyed."""
    with pytest.raises(ProtocolError):
        decode_all(
            ControlRequest,
            encode(RunJob(lease=1, job_id=1, type="x", payload=b"null", attempt=1, max_attempts=1)),
        )


def test_deeply_nested_payload_is_a_protocol_error() -> None:
    """A frame whose payload nests arrays very deeply is refused as a bad frame."""
    prefix = msgspec.msgpack.encode({"t": "enqueue", "jobs": [{"type": "x", "payload": 0}]})
    body = prefix[:-1] + b"\x91" * 100_000 + b"\x00"  # fixarray-of-1, 100k levels deep
    assert len(body) < MAX_FRAME
    with pytest.raises(ProtocolError):
        decode_all(ControlRequest, _frame(body))


def _check_only_protocol_errors(data: bytes) -> None:
    decoder = FrameDecoder(ControlRequest, max_frame=4096)
    decoder.feed(data)
    try:
        for msg in decoder.messages():
            assert type(msg) in _members(ControlRequest)
    except ProtocolError:
        pass


@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_protocol_error(data: bytes) -> None:
    """Whatever bytes a peer sends, decoding either yields requests or raises ProtocolError."""
    _check_only_protocol_errors(data)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_arbitrary_framed_bodies_only_raise_protocol_error(bodies: list[bytes]) -> None:
    """Well-framed garbage bodies yield requests or raise ProtocolError, never another error."""
    _check_only_protocol_errors(b"".join(_frame(body) for body in bodies))


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_keys = st.sampled_from(["t", "id", "rid", "jobs", "type", "ids", "version", "token"])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)
_tags = st.sampled_from(["hello", "enqueue", "get", "list", "wait", "logs", "status", "x"])


@pytest.mark.slow
@given(_tags, st.dictionaries(_keys, _values, max_size=4))
def test_msgpack_maps_of_any_shape_only_raise_protocol_error(
    tag: str, fields: dict[str, Any]
) -> None:
    """A msgpack map with any tag and any fields decodes to a request or raises ProtocolError."""
    _check_only_protocol_errors(_frame(msgspec.msgpack.encode({**fields, "t": tag})))


# ---------------------------------------------------------------- frozen samples


def test_frozen_sample_files_match_the_expected_set() -> None:
    """Every frozen sample on disk has an expected value here, and the other way round."""
    on_disk = {path.stem for path in SAMPLES_DIR.glob("*.frame")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frozen_sample_decodes_to_expected(name: str) -> None:
    """Frames written by protocol v1 still decode to the same values with the current code."""
    union, expected = EXPECTED[name]
    data = (SAMPLES_DIR / f"{name}.frame").read_bytes()
    decoded = decode_all(union, data)
    assert decoded == [expected]
    assert type(decoded[0]) is type(expected)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536, 70000])
@pytest.mark.parametrize("kind", [Enqueued, JobList])
def test_a_reply_encoded_in_pieces_is_the_same_frame(count: int, kind: type) -> None:
    """A reply with many jobs, encoded around its list and the list in pieces (as the
    supervisor does, so as not to hold its loop), is byte for byte what encode() makes."""
    jobs = [JOB_FAILED, JOB_QUEUED, JOB_DONE] * (count // 3) + [JOB_QUEUED] * (count % 3)
    reply = kind(jobs=jobs, rid=77)
    before, after = protocol.encode_around(reply, "jobs")
    pieces = [protocol.encode_items(jobs[i : i + 1000]) for i in range(0, count, 1000)]
    body = before + protocol.list_header(count) + b"".join(pieces) + after
    assert HEADER.pack(len(body)) + body == encode(reply)


def test_the_supervisor_reads_every_control_request() -> None:
    """SupervisorRequest is ControlRequest with Enqueue read lazily: the same tags, so a
    request added to one and not the other fails here, not at a client."""

    def tags(union: object) -> set[str]:
        return {cls.__struct_config__.tag for cls in typing.get_args(union)}

    assert tags(protocol.SupervisorRequest) == tags(ControlRequest)


def test_an_enqueue_read_lazily_gives_the_specs_sent() -> None:
    """EnqueueLazy decodes the bytes of an Enqueue; decode_spec gives back each spec, and
    names the job of the request that is malformed."""
    specs = [JobSpec(type="T", payload={"n": n}, subject=f"s{n}", priority=n) for n in range(3)]
    frame = encode(Enqueue(jobs=specs, rid=9))
    decoder = FrameDecoder(protocol.SupervisorRequest, 1 << 20)
    decoder.feed(frame)
    [lazy] = list(decoder.messages())
    assert isinstance(lazy, protocol.EnqueueLazy) and lazy.rid == 9
    assert [protocol.decode_spec(raw, i) for i, raw in enumerate(lazy.jobs)] == specs
    bad = msgspec.msgpack.encode({"t": "enqueue", "jobs": [{"type": "T"}, {"type": 5}]})
    decoder.feed(HEADER.pack(len(bad)) + bad)
    [lazy] = list(decoder.messages())
    with pytest.raises(ProtocolError, match=r"job 1 of the request"):
        [protocol.decode_spec(raw, i) for i, raw in enumerate(lazy.jobs)]


def _struct_types(message: type) -> set[type]:
    """``message`` and every Struct its fields hold, however deep (lists, unions, ...)."""
    found: set[type] = set()
    todo: list[Any] = [message]
    while todo:
        item = todo.pop()
        if isinstance(item, type) and issubclass(item, msgspec.Struct):
            if item in found:
                continue
            found.add(item)
            for klass in item.__mro__:
                todo.extend(vars(klass).get("__annotations__", {}).values())
        else:
            todo.extend(typing.get_args(item))
    return found


@pytest.mark.parametrize(
    ("union", "model"),
    [(ControlReply, Job), (ControlRequest, JobSpec)],
    ids=["replies", "requests"],
)
def test_message_field_types_are_not_postponed_strings(union: Any, model: type) -> None:
    # A decoder resolves string annotations with a compile() and an eval each: a few ms
    # of every new semctl process, paid before its first reply is read.
    structs: set[type] = set()
    for message in typing.get_args(union):
        structs |= _struct_types(message)
    assert model in structs  # the walk reaches the models
    postponed = {
        f"{struct.__qualname__}.{name}"
        for struct in structs
        for klass in struct.__mro__
        for name, value in vars(klass).get("__annotations__", {}).items()
        if isinstance(value, str)
    }
    assert not postponed


def test_a_slice_of_specs_decodes_in_one_go_and_a_bad_one_is_named() -> None:
    """handle_enqueue decodes a slice of an enqueue's specs in one call: the same specs
    as one by one, and a malformed one still named by its place in the request."""
    from semantica.supervisor.handlers.jobs import decode_specs

    specs = [JobSpec(type="T", payload={"n": n}, priority=n % 3) for n in range(40)]
    raws = [msgspec.Raw(msgspec.msgpack.encode(spec)) for spec in specs]
    assert decode_specs(raws, 0, 40) == specs
    assert decode_specs(raws, 10, 25) == specs[10:25]
    raws[17] = msgspec.Raw(msgspec.msgpack.encode({"type": 5}))
    with pytest.raises(ProtocolError, match=r"\(job 17 of the request\)"):
        decode_specs(raws, 10, 25)
