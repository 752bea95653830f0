"""This supervisor as a node of its store: registration, heartbeats, the dead it
reaps, the fence it puts on itself, and the wake-ups other nodes send.

Every supervisor is a node. On SQLite it is the only one: it registers, and
nothing else here runs. On a shared store (PostgreSQL) several nodes lease from
one queue, and these promises hold, with ``T`` the node timeout
(``SEMANTICA_NODE_TIMEOUT``):

* **Heartbeats.** A node renews its heartbeat every ``T / 5``, publishing its
  workers and their jobs (so ``status`` on any node shows the whole cluster).
* **The dead.** After each heartbeat a node declares dead every node whose
  heartbeat is older than ``T`` by the database's clock, and puts that node's
  running jobs back in the queue (interrupted: the attempt is not spent); the
  store makes sure each job goes back once, whoever reaps. A node that has just
  reached the database again after most of ``T`` without does so only once its
  heartbeats have got through for ``T``: after an outage of the database itself
  the nodes come back at their own pace, and none is declared dead for being
  slower. (A failure to reap is no failed heartbeat: it is tried at the next beat.)
* **The fence.** A node that has not renewed its heartbeat for ``T / 2`` (by
  its own monotonic clock, counted from when its last successful heartbeat was
  *sent*) kills its running jobs: it can no longer tell the others it is alive,
  so before any of them may declare it dead (``T`` after that heartbeat), none
  of its jobs runs any more. The same holds after the node was frozen (SIGSTOP,
  a suspended VM): it looks at the time before anything else. Its workers keep
  the same deadline themselves (worker/fence.py): each heartbeat that gets
  through renews their jobs' leases for ``T / 2``, and a worker not renewed in
  time kills its job and exits, so a supervisor frozen alone cannot leave a
  copy running either.
* **Coming back.** A heartbeat that finds the node declared dead (it was cut
  off or frozen past ``T``) makes it kill whatever still runs and join again
  as a new node; the late reports of its old jobs are refused by their leases.
* **Wake-ups.** What other nodes change (an enqueue, a pause, a job that
  ended, a request to stop a job) arrives through the store's change feed,
  read in a thread: the scheduler looks again, waiters here learn of jobs that
  ended elsewhere, and a job running here that another node cancelled is
  stopped. A feed that breaks is read as "everything changed", then opened
  again; each heartbeat also looks for stop requests, in case one was missed.

Fails: a store fault in a heartbeat is logged (once per outage) and retried at
the next beat; the fence is what protects the jobs meanwhile.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import structlog
import trio

from semantica import __version__
from semantica.config import Settings
from semantica.errors import NoSuchJob, StoreError
from semantica.models import TERMINAL_STATES, JobError, JobState
from semantica.protocol import NodeView, WorkerTop
from semantica.supervisor.events import JobEvents
from semantica.supervisor.store import ChangeFeed, JobStore, NodeSpec, StoreReads

log = structlog.get_logger("semantica.cluster")

#: How often a node beats, as a fraction of the node timeout.
BEAT_FRACTION = 1 / 5
#: After this fraction of the node timeout without a heartbeat, a node kills its jobs.
FENCE_FRACTION = 1 / 2
#: How long one read of the change feed may block its thread before it looks again.
FEED_WAIT_S = 5.0
#: Pause before the change feed is opened again after it broke.
FEED_RETRY_S = 0.5
#: How often a node waiting for a job on another node to stop looks at it.
STOP_POLL_S = 0.25


def finished_elsewhere(store: StoreReads, events: JobEvents) -> None:
    """Tell waiters and log followers here about jobs that finished on another node.

    The states are read in one call (a client may wait for thousands of jobs, and
    this runs at every change feed notice of an end); one by one only when one of
    the jobs is gone.
    """
    pending = events.pending()
    if not pending:
        return
    try:
        states = store.states(pending)
    except NoSuchJob:  # one was deleted meanwhile: look at each
        states = {}
        for job_id in pending:
            try:
                states[job_id] = store.state(job_id)
            except NoSuchJob:  # nothing more will happen to it
                events.job_finished(job_id)
    for job_id, state in states.items():
        if state in TERMINAL_STATES:
            events.job_finished(job_id)


class Detail(msgspec.Struct):
    """What a node publishes with its heartbeat (opaque JSON to the store)."""

    workers: list[WorkerTop] = msgspec.field(default_factory=list)


_decode_detail = msgspec.json.Decoder(Detail).decode


class Node:
    """This supervisor among the nodes of its store (see the module docstring).

    Args:
        store: the job store (its node methods: join, heartbeat, reap_dead, leave).
        settings: the node's name and timeout, the worker count, the state directory.
        workers: this node's workers now, with their jobs, CPU and memory (published
            with each heartbeat).
        fence: kill the jobs this node runs, with a reason; returns how many.
        wake: a job may be able to start (the scheduler looks again).
        events: who waits for jobs here (told of jobs that ended on other nodes).
        stop_local: stop a job running here (the pool's stop_job).
        renew: tell the workers their jobs' leases hold (after each heartbeat that
            reached the database: see :attr:`lease_for` and worker/fence.py).
        schedules_changed: another node put, removed, paused or resumed a schedule
            (the feed's ``schedules``), or the feed was lost: the schedule timer looks
            again.
    """

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        workers: Callable[[], list[WorkerTop]],
        fence: Callable[[str], int],
        wake: Callable[[], None],
        events: JobEvents,
        stop_local: Callable[[int, str, str], Awaitable[bool]],
        renew: Callable[[], None] = lambda: None,
        schedules_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.timeout = settings.node_timeout
        self.spec = NodeSpec(
            key=f"{socket.gethostname()}:{settings.paths.home}",
            name=settings.node_name,
            host=socket.gethostname(),
            version=__version__,
            workers=settings.workers,
        )
        self._workers = workers
        self._fence = fence
        self._wake = wake
        self._events = events
        self._stop_local = stop_local
        self._renew = renew
        self._schedules_changed = schedules_changed
        self._stopping: set[int] = set()  # jobs being stopped at another node's request
        self._nursery: trio.Nursery | None = None
        self.node_id = 0
        self._feed: ChangeFeed | None = None
        self._last_ok = 0.0  # trio time the last successful heartbeat was sent
        self._faulted = False  # a heartbeat failed (logged once per outage)
        #: Since when (trio time) this node's heartbeats have been getting through: it
        #: declares others dead only once that is a node timeout ago (see beat()).
        self._reaching_since = 0.0
        self.fenced = 0  # how many times this node killed its jobs (for status, tests)

    def join(self) -> None:
        """Register (at start, before any lease): the RUNNING jobs of this node's earlier
        life go back to the queue. Raises StoreError as the store does."""
        self.node_id = self.store.join(self.spec)
        self._last_ok = trio.current_time()
        self._reaching_since = self._last_ok - self.timeout  # (a start is not an outage)
        self._feed = self.store.changes()
        log.info("joined", node=self.spec.name, node_id=self.node_id)

    @property
    def lease_for(self) -> float:
        """How long a worker may run a job past this node's last renewal (0: no bound):
        the fence's time, so a worker whose supervisor is frozen stops its job as the
        supervisor itself would have."""
        return self.timeout * FENCE_FRACTION if self.shared else 0.0

    @property
    def shared(self) -> bool:
        """Whether other nodes share the store (they do on PostgreSQL)."""
        return self._feed is not None

    def leave(self) -> None:
        """A clean stop, after the drain: the others need not wait for the timeout."""
        try:
            self.store.leave()
        except StoreError as exc:
            log.warning("could not leave the cluster cleanly", error=str(exc))

    def view(self) -> tuple[list[NodeView], list[WorkerTop]]:
        """The nodes the store knows (alive, and those dead or gone lately), and the
        workers of the live ones: this node's as they are now, the others' as of their
        last heartbeat. Raises StoreError as the store does."""
        now = self.store.clock.time()
        here = [msgspec.structs.replace(w, node=self.spec.name) for w in self._workers()]
        nodes, workers = [], list(here)
        for info in self.store.nodes():
            this = info.node_id == self.node_id
            nodes.append(
                NodeView(
                    id=info.node_id,
                    name=info.name,
                    host=info.host,
                    pid=info.pid,
                    version=info.version,
                    workers=info.workers,
                    started_at=datetime.fromtimestamp(info.started_at, UTC),
                    heartbeat_age_s=0.0 if this else round(max(0.0, now - info.heartbeat_at), 3),
                    state=info.state,
                    this=this,
                )
            )
            if this or info.state != "alive" or not info.detail:
                continue
            try:
                published = _decode_detail(info.detail)
            except msgspec.DecodeError:  # (a node of another version, say)
                continue
            workers += [msgspec.structs.replace(w, node=info.name) for w in published.workers]
        return nodes, workers

    def census(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """For the metrics: nodes by state, and every live node's workers by (node, state);
        nothing while the store cannot be read (the other metrics are still worth a scrape)."""
        try:
            nodes, workers = self.view()
        except StoreError:
            return {}, {}
        by_state: dict[str, int] = {}
        for node in nodes:
            by_state[node.state] = by_state.get(node.state, 0) + 1
        by_node: dict[tuple[str, str], int] = {}
        for worker in workers:
            key = (worker.node or "", worker.state)
            by_node[key] = by_node.get(key, 0) + 1
        return by_state, by_node

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Beat, reap and listen until cancelled (nothing to do alone on SQLite)."""
        task_status.started()
        if not self.shared:
            return
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._listen)
            await self._beat_forever()

    async def _beat_forever(self) -> None:
        # The first beat at once: the fence counts from the join, and the start between
        # the two (the workers, on a busy machine) may take a good part of T / 2.
        interval = self.timeout * BEAT_FRACTION
        while True:
            self.beat()
            await trio.sleep(interval)

    def beat(self) -> None:
        """One heartbeat: the fence check first (the node may have been frozen), then the
        heartbeat, then reaping the dead."""
        sent = trio.current_time()
        if sent - self._last_ok > self.timeout * FENCE_FRACTION:
            self._fence_now("no heartbeat reached the database for half the node timeout")
        detail = msgspec.json.encode(Detail(workers=self._workers()))
        try:
            alive = self.store.heartbeat(detail)
        except StoreError as exc:
            if not self._faulted:
                log.warning("heartbeat failed; will keep trying", error=str(exc))
                self._faulted = True
            return
        if self._faulted:
            log.info("heartbeat reached the database again")
            self._faulted = False
            if sent - self._last_ok >= self.timeout * (1 - BEAT_FRACTION):
                # Long enough for the others' heartbeats to look old too (an outage of
                # the database itself): they come back at their own pace, and must not
                # be declared dead before they could beat again.
                self._reaching_since = sent
        self._last_ok = sent
        if not alive:
            self._fence_now("this node was declared dead by the others")
            self.join()
        self._renew()
        self._reap()
        self._act_on_stop_requests()  # (a request whose notice was missed: the feed broke)

    def _reap(self) -> None:
        """Declare the silent nodes dead and put their jobs back (see the module docstring).
        A failure here is not this node's heartbeat failing: it is tried at the next beat
        (a node frozen inside a transaction holds its rows until the server ends its
        session, well before the node timeout)."""
        if trio.current_time() - self._reaching_since < self.timeout:
            return
        try:
            reaped = self.store.reap_dead(self.timeout)
        except StoreError as exc:
            log.info("could not look for dead nodes now; at the next beat", error=str(exc))
            return
        if reaped:
            log.warning("re-queued the jobs of dead nodes", count=len(reaped), job_ids=reaped[:20])
            self._wake()

    def _act_on_stop_requests(self) -> None:
        """Stop the jobs running here that another node asked to stop (a cancel there)."""
        try:
            requests = self.store.stop_requests()
        except StoreError as exc:
            log.warning("could not read stop requests", error=str(exc))
            return
        for job_id, error in requests:
            if job_id not in self._stopping and self._nursery is not None:
                self._stopping.add(job_id)
                self._nursery.start_soon(self._stop_here, job_id, error)

    async def _stop_here(self, job_id: int, error: JobError) -> None:
        try:
            await self._stop_local(job_id, error.kind, error.message)
        finally:
            self._stopping.discard(job_id)

    async def until_ended(self, job_id: int) -> None:
        """Return once ``job_id`` (running on another node) is no longer RUNNING: told by
        the change feed, or seen at a look every STOP_POLL_S."""
        while True:
            try:
                state = self.store.state(job_id)
            except NoSuchJob:
                return
            if state != JobState.RUNNING:
                return
            ended = self._events.all_finished({job_id})  # (no checkpoint since the read)
            with trio.move_on_after(STOP_POLL_S):
                await ended.wait()

    def _fence_now(self, why: str) -> None:
        killed = self._fence(f"node {self.spec.name}: {why}")
        if killed:
            self.fenced += 1
            log.warning("killed this node's running jobs", reason=why, count=killed)

    async def _listen(self) -> None:
        """Read the change feed in a thread; turn what it says into wake-ups."""
        assert self._feed is not None
        feed = self._feed
        try:
            while True:
                try:
                    kinds = await trio.to_thread.run_sync(
                        feed.wait, FEED_WAIT_S, abandon_on_cancel=True
                    )
                except StoreError as exc:
                    log.info("change feed lost; looking at everything", error=str(exc))
                    self._wake()
                    self._schedules_changed()
                    finished_elsewhere(self.store, self._events)
                    await trio.sleep(FEED_RETRY_S)
                    continue
                if kinds:
                    self._wake()
                    self._events.touch()  # live views (the web view) read again
                if "ends" in kinds:
                    finished_elsewhere(self.store, self._events)
                if "stops" in kinds:
                    self._act_on_stop_requests()
                if "schedules" in kinds:
                    self._schedules_changed()
        finally:
            feed.close()
