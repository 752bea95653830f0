"""The worker pool's clocks: timeouts, cancel, a worker that will not stop, and the drain.

Workers run in-process (the real ``Worker`` over a real socket pair) behind a
fake process, so trio's autojump clock drives every deadline: no real sleeps.
"""

from __future__ import annotations

import itertools
import signal
import socket
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from structlog.testing import capture_logs

from semantica.framed import FramedStream
from semantica.models import JobError, JobSpec, JobState
from semantica.protocol import (
    WORKER_MAX_FRAME,
    FromWorker,
    JobFinished,
    JobLog,
    ToWorker,
    encode,
)
from semantica.supervisor.committer import Committer
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.pool import (
    MAX_PREFETCH,
    PREFETCH_BUDGET_S,
    SILENCE_CONFIRM_S,
    STOP_MARGIN,
    WorkerHandle,
    WorkerPool,
)
from semantica.supervisor.pool import handle as pool_handle
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import Lease
from semantica.supervisor.store.sqlite import SQLiteStore
from semantica.supervisor.tracing import Tracer
from semantica.worker.registry import handler
from semantica.worker.runner import Worker

GRACE = 3.0
HEARTBEAT_TIMEOUT = 8.0
#: Trio seconds any one test may take: far more than the longest needs (~100).
RIG_LIMIT_S = 1_000.0
_pids = itertools.count(10_000)


@handler("UP_SLEEP")
async def _sleep(ctx: Any, payload: dict[str, float]) -> str:
    await trio.sleep(payload["seconds"])
    return "slept"


@handler("UP_FAIL")
async def _fail(ctx: Any, payload: Any) -> None:
    raise ValueError("no")


@handler("UP_STUBBORN")
async def _stubborn(ctx: Any, payload: Any) -> None:
    """Ignores cancellation: its worker cannot report until it is killed."""
    with trio.CancelScope(shield=True):
        await trio.sleep(10_000)


class _LastWords:
    running = trio.Event()  # (made anew by each test that waits for it)


@handler("UP_LAST_WORDS")
async def _last_words(ctx: Any, payload: Any) -> None:
    """Logs as it starts, and as it is stopped; its stop takes a second."""
    ctx.log("working")
    _LastWords.running.set()
    try:
        await trio.sleep(10_000)
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(1)
        ctx.log("stopping")


_release_deaf = threading.Event()


@handler("UP_DEAF")
def _deaf(ctx: Any, payload: Any) -> None:
    """A plain handler that ignores its stop: its thread runs on until the test releases it."""
    _release_deaf.wait(timeout=60)


class TrioWallClock:
    """Wall-clock time that moves with trio's (autojump) clock."""

    def time(self) -> float:
        return 1_800_000_000.0 + trio.current_time()


class FakeProcess:
    """An in-process worker standing in for a child process; signals end it."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.pid = next(_pids)
        self.returncode: int | None = None
        self.scope = trio.CancelScope()
        self.nursery = nursery
        self.worker: Worker | None = None  # once it runs
        self.sock: trio.SocketStream | None = None
        self._exited = trio.Event()
        self.signals: list[int] = []
        #: Another process holds the worker's end of the channel too (a fork of it):
        #: the worker's death does not close the channel.
        self.held: socket.socket | None = None

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.exit(-signal.SIGKILL)  # gone at once, whatever it was doing
        elif self.worker is not None:
            self.nursery.start_soon(self.worker.shut_down)  # SIGTERM, as a real worker takes it
        else:
            self.scope.cancel()  # (before its worker runs: nothing to stop)

    def exit(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            self.scope.cancel()
            if self.held is None and self.sock is not None and self.sock.socket.fileno() != -1:
                self.sock.socket.shutdown(socket.SHUT_RDWR)  # the pool sees EOF
            self._exited.set()


class SilentWorker(Worker):
    """A worker whose event loop would be stuck: it never sends a heartbeat."""

    async def _beat(self) -> None:
        await trio.sleep_forever()


class InProcessPool(WorkerPool):
    """A pool whose workers are tasks in ``nursery`` instead of processes."""

    def __init__(
        self,
        nursery: trio.Nursery,
        worker_class: type[Worker] = Worker,
        hold_channels: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.nursery = nursery
        self.worker_class = worker_class
        self.hold_channels = hold_channels
        self.processes: list[FakeProcess] = []

    async def _start_process(self) -> tuple[Any, trio.SocketStream]:
        ours, theirs = socket.socketpair()
        process = FakeProcess(self.nursery)
        if self.hold_channels:
            process.held = theirs.dup()
        self.processes.append(process)
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(theirs))
        process.sock = stream

        async def run() -> None:
            try:
                with process.scope:
                    channel = FramedStream(stream, ToWorker, WORKER_MAX_FRAME)
                    process.worker = self.worker_class(channel)
                    await process.worker.serve()
            except (trio.BrokenResourceError, ExceptionGroup):
                if process.returncode is None:
                    raise
                # A "killed" worker's task may run on (a shielded job) and then
                # fail to write to its shut socket: a real process would be gone.
            finally:
                stream.socket.close()
            process.exit(0)

        self.nursery.start_soon(run)
        return process, trio.SocketStream(trio.socket.from_stdlib_socket(ours))


class Rig:
    """A store, the scheduler, the lifecycle and an in-process pool of one worker."""

    def __init__(
        self,
        tmp_path: Path,
        nursery: trio.Nursery,
        worker_class: type[Worker] = Worker,
        tracer: Tracer | None = None,
        size: int = 1,
        hold_channels: bool = False,
        grouped: bool = False,
    ) -> None:
        self.store = SQLiteStore(tmp_path / "semantica.db", TrioWallClock())
        self.events = JobEvents()
        # grouped: writes committed in groups, as in the supervisor.
        self.committer = Committer(self.store) if grouped else None
        self.scheduler = Scheduler(
            self.store,
            commits=self.committer,
        )
        self.jobs = JobLifecycle(
            self.store,
            JobLogs(tmp_path / "logs", 1 << 20),
            self.events,
            self.scheduler,
            tracer=tracer,
        )
        self.pool = InProcessPool(
            nursery,
            worker_class,
            hold_channels,
            size=size,
            handlers=(),
            scheduler=self.scheduler,
            jobs=self.jobs,
            cancel_grace=GRACE,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            **({} if self.committer is None else {"durable": self.committer.durable}),
        )
        self._started: defaultdict[int, trio.Event] = defaultdict(trio.Event)
        self.jobs.started = self._on_started  # type: ignore[method-assign]

    def enqueue(self, **spec: Any) -> int:
        return self.jobs.enqueue([JobSpec(**spec)]).jobs[0].id

    def enqueue_many(self, *specs: dict[str, Any]) -> list[int]:
        """Several jobs in one step: a worker woken for them sees them all."""
        return [job.id for job in self.jobs.enqueue([JobSpec(**spec) for spec in specs]).jobs]

    async def warm_up(self, jobs: int = 20) -> None:
        """Run short jobs until every worker has a short average (so it gets prefetches)."""
        ids = self.enqueue_many(*[{"type": "UP_SLEEP", "payload": {"seconds": 0}}] * jobs)
        for job_id in ids:
            await self.finished(job_id)
        # A worker measures its jobs with the real clock, so on a loaded machine
        # the average (and the depth of the next batch) would vary from run to
        # run. Pin it: the next batch from idle holds up to MAX_PREFETCH jobs.
        for worker in self.pool.workers:
            worker.average_s = PREFETCH_BUDGET_S / MAX_PREFETCH / 2

    async def finished(self, job_id: int) -> float:
        """Wait until the job reaches a finished state; return trio's time then."""
        if self.store.state(job_id) not in (JobState.QUEUED, JobState.RUNNING):
            return trio.current_time()
        await self.events.all_finished({job_id}).wait()
        return trio.current_time()

    async def running(self, job_id: int) -> None:
        """Wait until the job has been handed to a worker."""
        await self._started[job_id].wait()

    def _on_started(self, lease: Lease, worker_pid: int) -> None:
        JobLifecycle.started(self.jobs, lease, worker_pid)
        self._started[lease.job_id].set()


@asynccontextmanager
async def rig(
    tmp_path: Path,
    worker_class: type[Worker] = Worker,
    tracer: Tracer | None = None,
    size: int = 1,
    hold_channels: bool = False,
    grouped: bool = False,
) -> AsyncIterator[Rig]:
    async with trio.open_nursery() as workers, trio.open_nursery() as services:
        r = Rig(tmp_path, workers, worker_class, tracer, size, hold_channels, grouped)
        if r.committer is not None:
            await services.start(r.committer.run)
        await services.start(r.scheduler.run_timer)
        await services.start(r.pool.run)
        try:
            # Under the autojump clock a wait that never ends does not hang: the
            # pool's timers keep moving trio's time. Bound it, so such a test
            # fails in a moment instead of spinning until CI gives up.
            with trio.fail_after(RIG_LIMIT_S):
                yield r
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(RIG_LIMIT_S) as stopping:
                    await r.pool.stop("test over")
            services.cancel_scope.cancel()
            workers.cancel_scope.cancel()
            r.store.close()
            for process in r.pool.processes:
                if process.held is not None:
                    process.held.close()
        assert not stopping.cancelled_caught, "the pool did not stop"


async def test_job_past_its_timeout_fails_with_kind_timeout_and_is_retried(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A job with timeout 5 is stopped at 5 s, retried, and FAILED after its last attempt."""
    async with rig(tmp_path) as r:
        start = trio.current_time()
        job_id = r.enqueue(
            type="UP_SLEEP", payload={"seconds": 100}, timeout=5, max_attempts=2, backoff=0
        )
        end = await r.finished(job_id)
        job = r.store.get(job_id)
        assert job.state == JobState.FAILED and job.attempts == 2
        assert job.error is not None and job.error.kind == "timeout"
        assert end - start == pytest.approx(10.0, abs=0.1)  # two attempts of 5 s, no backoff
        assert not r.pool.processes[0].signals  # the worker stopped the job itself


async def test_a_job_within_its_timeout_ends_done(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A timeout that does not pass changes nothing."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 4}, timeout=5)
        await r.finished(job_id)
        assert r.store.get(job_id).state == JobState.DONE


async def test_cancel_of_a_running_job_returns_once_it_ended(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """stop_job on a cancellable job: CANCELLED at once, the worker kept."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 100})
        await r.running(job_id)
        before = trio.current_time()
        assert await r.pool.stop_job(job_id, "cancelled", "cancelled while running")
        assert trio.current_time() - before < 0.1
        job = r.store.get(job_id)
        assert job.state == JobState.CANCELLED
        assert job.error is not None and job.error.kind == "cancelled"
        assert len(r.pool.processes) == 1 and not r.pool.processes[0].signals
        assert not await r.pool.stop_job(job_id, "cancelled", "again")  # no longer running


async def test_worker_that_cannot_stop_its_job_is_killed_after_the_grace_period(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A job that ignores its stop: its worker is SIGKILLed after grace + margin, job CANCELLED."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_STUBBORN")
        await r.running(job_id)
        before = trio.current_time()
        assert await r.pool.stop_job(job_id, "cancelled", "cancelled while running")
        assert trio.current_time() - before == pytest.approx(GRACE + STOP_MARGIN, abs=0.1)
        assert r.store.get(job_id).state == JobState.CANCELLED
        assert r.pool.processes[0].signals == [signal.SIGKILL]
        follow_up = r.enqueue(type="UP_SLEEP", payload={"seconds": 1})
        await r.finished(follow_up)  # a replacement worker took over
        assert r.store.get(follow_up).state == JobState.DONE
        assert len(r.pool.processes) == 2


async def test_stop_interrupts_a_running_job_without_spending_its_attempt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The drain's last step: a running job goes back to the queue, attempt given back."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 100})
        await r.running(job_id)
        await r.pool.stop("shutting down")
        job = r.store.get(job_id)
        assert job.state == JobState.QUEUED and job.attempts == 0
        assert job.error is not None and job.error.kind == "interrupted"


async def test_a_job_stopped_by_the_drain_is_reported_with_its_last_lines_and_goes_back(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The drain's last step stops a running job as a cancel would: what it logs as it
    stops is in its log, its worker reports it and exits (nothing is killed), and it goes
    back to the queue with its attempt given back. An idle worker exits at once."""
    _LastWords.running = trio.Event()
    async with rig(tmp_path, size=2) as r:
        job_id = r.enqueue(type="UP_LAST_WORDS")
        await _LastWords.running.wait()  # (the worker runs it: not only handed over)
        before = trio.current_time()
        await r.pool.stop("shutting down")
        assert trio.current_time() - before == pytest.approx(1.0, abs=0.1)  # its stop's time
        job = r.store.get(job_id)
        assert job.state == JobState.QUEUED and job.attempts == 0
        assert job.error == JobError("interrupted", "shutting down")
        assert r.jobs.logs.tail(job_id) == ["working", "stopping"]
        assert [process.signals for process in r.pool.processes] == [[signal.SIGTERM]] * 2


async def test_a_job_being_cancelled_when_the_drain_kills_its_worker_ends_cancelled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A cancel under way when the drain's last step stops the worker, whose job never
    stops: the worker is killed, and the job ends CANCELLED, as asked; it does not go
    back to the queue to run again."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_STUBBORN")
        await r.running(job_id)
        await trio.sleep(0.1)  # the worker runs it (nothing to wait on for UP_STUBBORN)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r.pool.stop_job, job_id, "cancelled", "cancelled while running")
            await trio.sleep(0.1)  # the cancel is sent
            await r.pool.stop("shutting down")
        job = r.store.get(job_id)
        assert job.state == JobState.CANCELLED, job.error


async def test_a_job_being_cancelled_when_the_drain_stops_its_worker_is_reported_cancelled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A cancel under way when the drain's last step stops the worker, whose job stops
    within the grace: the worker reports it as the cancel asked, and it ends CANCELLED
    (the drain does not make it interrupted, to run again)."""
    _LastWords.running = trio.Event()
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_LAST_WORDS")
        await _LastWords.running.wait()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(r.pool.stop_job, job_id, "cancelled", "cancelled while running")
            await trio.sleep(0.1)  # the cancel is sent; its job takes a second to stop
            await r.pool.stop("shutting down")
        job = r.store.get(job_id)
        assert job.state == JobState.CANCELLED, job.error
        assert r.jobs.logs.tail(job_id) == ["working", "stopping"]
        assert r.pool.processes[0].signals == [signal.SIGTERM]  # it reported: not killed


async def test_no_job_goes_to_a_worker_that_exits_after_its_report(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A plain handler ignores its cancel: after the grace its worker reports the job
    CANCELLED and exits (the thread cannot be stopped). The job queued behind it must
    not be handed to that worker: it runs on the replacement, on its first attempt."""
    _release_deaf.clear()
    try:
        async with rig(tmp_path) as r:
            deaf = r.enqueue(type="UP_DEAF")
            await r.running(deaf)
            behind = r.enqueue(type="UP_SLEEP", payload={"seconds": 0}, max_attempts=1)
            assert await r.pool.stop_job(deaf, "cancelled", "cancelled while running")
            await r.finished(behind)
            assert r.store.get(deaf).state == JobState.CANCELLED
            job = r.store.get(behind)
            assert job.state == JobState.DONE and job.attempts == 1, job.error
            assert len(r.pool.processes) == 2  # the first worker exited by itself
            assert not r.pool.processes[0].signals
    finally:
        _release_deaf.set()


@pytest.mark.parametrize("asked_back", [True, False], ids=["asked back", "still held"])
async def test_a_job_prefetched_by_a_worker_that_exits_goes_back_unstarted(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    asked_back: bool,
) -> None:
    """The quick job handed over behind the deaf one never started on that worker: it is
    not announced as started there, goes back unspent and runs once on the replacement.

    Usually the pool asks for it back once the deaf job runs long; without that (a
    race), the worker still holds it when it sends its last report.
    """
    if not asked_back:
        monkeypatch.setattr(pool_handle, "HOLD_LIMIT_S", 1e9)
    _release_deaf.clear()
    try:
        async with rig(tmp_path) as r:
            await r.warm_up()  # short jobs so far: the worker takes several at once
            with capture_logs() as lines:
                deaf, quick = r.enqueue_many({"type": "UP_DEAF"}, {**QUICK, "max_attempts": 1})
                await r.running(deaf)
                first = r.pool.workers[0]
                assert [lease.job_id for lease in first.inflight] == [deaf, quick]
                assert await r.pool.stop_job(deaf, "cancelled", "cancelled while running")
                await r.finished(quick)
            job = r.store.get(quick)
            assert job.state == JobState.DONE and job.attempts == 1, job.error
            started = [line for line in lines if line.get("job_id") == quick]
            assert [line["event"] for line in started] == ["job started", "job done"]
            assert started[0]["worker_pid"] != first.pid
    finally:
        _release_deaf.set()


async def test_a_dead_worker_is_noticed_though_another_process_holds_its_channel(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker dies while a process it started (a fork) still holds its end of the
    channel, so no EOF comes: the pool notices the death from the process itself. The job
    is settled at once (worker_lost), the slot gets a new worker, and the pool stops."""
    async with rig(tmp_path, hold_channels=True) as r:
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 100}, max_attempts=1)
        await r.running(job_id)
        killed = trio.current_time()
        r.pool.processes[0].send_signal(signal.SIGKILL)  # the OOM killer, say
        ended = await r.finished(job_id)
        assert ended - killed < 1.0
        job = r.store.get(job_id)
        assert job.state == JobState.FAILED
        assert job.error is not None and job.error.kind == "worker_lost"
        follow_up = r.enqueue(type="UP_SLEEP", payload={"seconds": 1})
        await r.finished(follow_up)
        assert r.store.get(follow_up).state == JobState.DONE
        assert len(r.pool.processes) == 2  # the slot's replacement ran it


async def test_a_worker_that_exits_by_itself_is_reaped_though_its_channel_is_held(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker sends its last report and exits (its plain handler ignored a cancel) while
    another process holds its channel: the job ends as asked and the slot goes on."""
    _release_deaf.clear()
    try:
        async with rig(tmp_path, hold_channels=True) as r:
            deaf = r.enqueue(type="UP_DEAF", max_attempts=1)
            await r.running(deaf)
            assert await r.pool.stop_job(deaf, "cancelled", "cancelled while running")
            job = r.store.get(deaf)
            assert job.state == JobState.CANCELLED, job.error
            assert not r.pool.processes[0].signals  # it exited by itself
    finally:
        _release_deaf.set()


async def test_a_silent_worker_is_killed_after_the_heartbeat_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A busy worker that sends nothing for the heartbeat timeout is SIGKILLed; job worker_lost.

    (The supervisor looks once more a moment later, for heartbeats it had not read.)
    """
    async with rig(tmp_path, SilentWorker) as r:
        start = trio.current_time()
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 100}, max_attempts=1)
        end = await r.finished(job_id)
        assert end - start == pytest.approx(HEARTBEAT_TIMEOUT + SILENCE_CONFIRM_S, abs=0.1)
        job = r.store.get(job_id)
        assert job.state == JobState.FAILED
        assert job.error is not None and job.error.kind == "worker_lost"
        assert r.pool.processes[0].signals == [signal.SIGKILL]


async def test_a_long_job_that_beats_is_left_alone(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A job running far longer than the heartbeat timeout is fine while its worker beats."""
    async with rig(tmp_path) as r:
        job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 10 * HEARTBEAT_TIMEOUT})
        await r.finished(job_id)
        assert r.store.get(job_id).state == JobState.DONE
        assert not r.pool.processes[0].signals


async def test_each_state_change_is_one_log_event_with_its_fields(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A job's start and end are structlog events carrying job_id, type, queue, state, ..."""
    async with rig(tmp_path) as r:
        with capture_logs() as events:
            job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 2}, queue="qq")
            await r.finished(job_id)
            failing = r.enqueue(type="UP_FAIL", max_attempts=1)
            await r.finished(failing)
    mine = {e["event"]: e for e in events if e.get("job_id") == job_id}
    started, done = mine["job started"], mine["job done"]
    assert started["queue"] == "qq" and started["state"] == "RUNNING" and started["attempt"] == 1
    assert done["job_id"] == job_id and done["type"] == "UP_SLEEP" and done["queue"] == "qq"
    assert done["state"] == "DONE" and done["duration_ms"] == pytest.approx(2000, abs=5)
    [failed] = [e for e in events if e.get("job_id") == failing and e["event"] == "job failed"]
    assert failed["error_kind"] == "exception" and failed["error_message"] == "ValueError: no"


QUICK = {"type": "UP_SLEEP", "payload": {"seconds": 0}}
LONG = {"type": "UP_SLEEP", "payload": {"seconds": 100}}


async def test_short_jobs_are_handed_over_several_at_a_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker whose jobs are short gets a batch at once; every job still runs once, in order."""
    async with rig(tmp_path) as r:
        await r.warm_up()
        held: list[int] = []
        real_hand_over = r.pool._hand_over

        async def hand_over(worker: Any) -> None:
            held.append(len(worker.unsent))
            await real_hand_over(worker)

        r.pool._hand_over = hand_over  # type: ignore[method-assign]
        ids = r.enqueue_many(*[QUICK] * 40)
        for job_id in ids:
            await r.finished(job_id)
        jobs = r.store.get_many(ids)
    assert max(held) > 1
    assert all(job.state == JobState.DONE and job.attempts == 1 for job in jobs)
    starts = [job.started_at for job in jobs]
    assert starts == sorted(starts)  # FIFO holds within and across batches


async def test_a_workers_ends_are_recorded_a_batch_at_a_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker that holds a batch of short jobs has its ends recorded several at a time
    (one store write and one commit for them), not one step per end; every job still
    ends DONE, once, in order, and the last ones are recorded without delay."""
    async with rig(tmp_path, size=2) as r:
        await r.warm_up()
        steps: list[int] = []
        real_complete_many = r.store.complete_many

        def complete_many(ends: Any) -> list[Lease]:
            steps.append(len(ends))
            return real_complete_many(ends)

        r.store.complete_many = complete_many  # type: ignore[method-assign]
        given_back: set[int] = set()
        real_give_back = r.store.give_back

        def give_back(leases: Any) -> int:
            leases = list(leases)
            given_back.update(lease.job_id for lease in leases)
            return real_give_back(leases)

        r.store.give_back = give_back  # type: ignore[method-assign]
        ids = r.enqueue_many(*[QUICK] * 400)
        start = trio.current_time()
        for job_id in ids:
            await r.finished(job_id)
        took = trio.current_time() - start
        jobs = r.store.get_many(ids)
    assert sum(steps) == len(ids)
    # One step per end or two would be about 270 steps; batched, 70 on a quiet machine
    # and up to about 150 on a busy one, where reports come to the supervisor more apart.
    assert len(steps) < len(ids) / 2, steps
    assert took < 0.5
    assert all(job.state == JobState.DONE and job.attempts == 1 for job in jobs)
    # Jobs start in the order they were queued; one given back to the queue (a worker
    # slow to report, when the machine is busy) starts again later, out of that order.
    starts = [job.started_at for job in jobs if job.id not in given_back]
    assert starts == sorted(starts)
    assert len(starts) > len(ids) / 2, given_back


class HeldGate:
    """A maintenance gate kept shut until the test opens it."""

    def __init__(self) -> None:
        self.open = trio.Event()

    async def passage(self) -> None:
        await self.open.wait()


async def test_every_prefetched_job_is_announced_started_before_its_end(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Jobs that start and end between two reports still get their start event and log line."""
    async with rig(tmp_path) as r:
        await r.warm_up()
        watcher = r.events.watch()
        with capture_logs() as lines:
            # Hold the recording of ends until the worker has run its whole
            # batch: its ends then come to the supervisor together.
            gate = HeldGate()
            r.pool.gate = gate
            ids = r.enqueue_many(*[QUICK] * 10)
            await trio.testing.wait_all_tasks_blocked()
            assert len(r.pool.workers[0].ends) > 2
            gate.open.set()
            for job_id in ids:
                await r.finished(job_id)
        r.events.unwatch(watcher)
        seen: list[tuple[int, str]] = []
        async for event in watcher.receive:
            seen.append((event.job_id, event.event))
    for job_id in ids:
        mine = [name for event_job, name in seen if event_job == job_id]
        assert mine == ["enqueued", "started", "done"], (job_id, mine)
        logged = [line["event"] for line in lines if line.get("job_id") == job_id]
        assert logged == ["job started", "job done"], (job_id, logged)


async def test_a_dead_workers_unrecorded_jobs_are_announced_started_before_their_ends(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker dies with ends unrecorded and a job running: each logs a start, then an end."""
    async with rig(tmp_path) as r:
        await r.warm_up()
        with capture_logs() as lines:
            r.pool.gate = HeldGate()  # nothing the worker reports is recorded ...
            ids = r.enqueue_many(*[QUICK] * 4, {**LONG, "max_attempts": 1})
            await trio.testing.wait_all_tasks_blocked()
            worker = r.pool.workers[0]
            assert len(worker.ends) == 4  # ... and the long one runs
            assert worker.lease is not None and worker.lease.job_id == ids[-1]
            r.pool.processes[-1].send_signal(signal.SIGKILL)
            for job_id in ids:
                await r.finished(job_id)
        jobs = r.store.get_many(ids)
    assert [job.state for job in jobs] == [JobState.DONE] * 4 + [JobState.FAILED]
    for job_id in ids:
        logged = [line["event"] for line in lines if line.get("job_id") == job_id]
        assert logged[0] == "job started" and len(logged) == 2, (job_id, logged)


async def test_a_job_is_not_held_behind_a_long_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Quick jobs handed over behind a long one are given back and run by the other worker.

    They were never started, so they do not spend an attempt.
    """
    async with rig(tmp_path, size=2) as r:
        await r.warm_up()
        long_id, *quick = r.enqueue_many(LONG, QUICK, QUICK, QUICK)
        start = trio.current_time()
        for job_id in quick:
            await r.finished(job_id)
        assert trio.current_time() - start < 1.0
        assert r.store.get(long_id).state == JobState.RUNNING
        for job in r.store.get_many(quick):
            assert job.state == JobState.DONE and job.attempts == 1


async def test_cancel_of_a_handed_over_job_not_yet_started_ends_it_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as r:
        await r.warm_up()
        long_id, quick_id = r.enqueue_many(LONG, QUICK)
        await r.running(long_id)
        worker = r.pool.workers[0]
        assert [lease.job_id for lease in (*worker.inflight, *worker.unsent)] == [long_id, quick_id]
        before = trio.current_time()
        assert await r.pool.stop_job(quick_id, "cancelled", "cancelled while running")
        assert trio.current_time() - before < 0.1
        assert r.store.get(quick_id).state == JobState.CANCELLED
        assert r.store.get(long_id).state == JobState.RUNNING
        assert not r.pool.processes[0].signals  # no worker was harmed


async def test_a_drain_gives_back_handed_over_jobs_unstarted_and_unspent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as r:
        await r.warm_up()
        long_id, *quick = r.enqueue_many(LONG, QUICK, QUICK)
        await r.running(long_id)
        r.scheduler.stop_leasing()
        await r.pool.give_back_all()
        await r.pool.stop("shutting down")
        for job in r.store.get_many([long_id, *quick]):
            assert job.state == JobState.QUEUED and job.attempts == 0
        assert not any(r._started[job_id].is_set() for job_id in quick)


async def test_a_dead_workers_unstarted_jobs_go_back_without_spending_an_attempt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The running job's attempt is spent (it may have killed the worker); the rest are not."""
    async with rig(tmp_path) as r:
        await r.warm_up()
        long_id, quick_id = r.enqueue_many({**LONG, "max_attempts": 1}, QUICK)
        await r.running(long_id)
        r.pool.processes[-1].send_signal(signal.SIGKILL)
        await r.finished(long_id)
        await r.finished(quick_id)
        lost, quick = r.store.get_many([long_id, quick_id])
    assert lost.state == JobState.FAILED and lost.error is not None
    assert lost.error.kind == "worker_lost"
    assert quick.state == JobState.DONE and quick.attempts == 1


async def test_output_read_after_a_jobs_end_is_put_under_that_job(tmp_path: Path) -> None:
    """A worker's stdout is a pipe of its own, read apart from its reports: a handler's
    last printed line may be read after its end. It is still that job's line, not a
    line of no job; once the next job runs, lines are the next job's."""
    async with trio.open_nursery() as nursery:
        r = Rig(tmp_path, nursery)  # no pool task: the test plays the worker's side
        r.enqueue_many(QUICK, QUICK)
        first, second = r.store.lease_many(4242, 2)
        ours, theirs = socket.socketpair()
        worker = WorkerHandle(
            process=FakeProcess(nursery),
            channel=FramedStream(
                trio.SocketStream(trio.socket.from_stdlib_socket(ours)), FromWorker
            ),
        )
        worker.inflight.append(first)
        assert worker.output_job_id == first.job_id
        with theirs:
            theirs.sendall(encode(JobFinished(lease=first.lease_id, result=b"null")))
        await r.pool._read(worker, trio.CancelScope())  # returns at EOF
        await worker.channel.aclose()
        assert list(worker.inflight) == []
        assert worker.output_job_id == first.job_id  # its printing, read late
        worker.inflight.append(second)
        assert worker.output_job_id == second.job_id
        r.jobs.logs.close_all()
        r.store.close()


async def test_lines_of_the_next_job_that_come_before_the_previous_end_are_kept(
    tmp_path: Path,
) -> None:
    """A worker starts its next job as soon as it has queued the previous report,
    so that job's first log line can arrive first: it lands in that job's log."""
    async with trio.open_nursery() as nursery:
        r = Rig(tmp_path, nursery)  # no pool task: the test plays the worker's side
        r.enqueue_many(QUICK, QUICK)
        first, second = r.store.lease_many(4242, 2)
        ours, theirs = socket.socketpair()
        worker = WorkerHandle(
            process=FakeProcess(nursery),
            channel=FramedStream(
                trio.SocketStream(trio.socket.from_stdlib_socket(ours)), FromWorker
            ),
        )
        worker.inflight.extend([first, second])
        with theirs:
            theirs.sendall(
                encode(JobLog(lease=second.lease_id, lines=["early"]))
                + encode(JobFinished(lease=first.lease_id, result=b"null"))
            )
        await r.pool._read(worker, trio.CancelScope())  # returns at EOF
        await worker.channel.aclose()
        assert r.jobs.logs.tail(second.job_id) == ["early"]
        assert [end[0] for end in worker.ends] == [first]
        assert list(worker.inflight) == [second]
        r.jobs.logs.close_all()
        r.store.close()


async def test_a_job_enqueued_for_an_idle_worker_is_written_to_it_in_the_step_of_its_commit(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The enqueue's commit, made in its own step, leases the job for the idle worker just
    before; the one commit of both writes the job to the worker in the same step (before
    a reply could go out); the feeder then announces it, and it runs once."""
    async with rig(tmp_path, grouped=True, size=2) as r:
        await r.warm_up(4)
        await trio.sleep(1)  # every timer of the warm-up run out: the pool is idle
        await trio.testing.wait_all_tasks_blocked()
        assert r.committer is not None
        commits = r.committer.commits
        with capture_logs() as lines:
            job_id = r.enqueue(type="UP_SLEEP", payload={"seconds": 0})
            assert r.committer.commit_if_alone()  # nothing else runnable: the enqueue's own
            assert r.committer.commits == commits + 1
            [worker] = [w for w in r.pool.workers if w.inflight]
            assert [lease.job_id for lease in worker.inflight] == [job_id]
            assert not worker.unsent
            await r.finished(job_id)
        job = r.store.get(job_id)
        assert job.state == JobState.DONE and job.attempts == 1
        assert [line["event"] for line in lines if line.get("job_id") == job_id] == [
            "job started",
            "job done",
        ]
