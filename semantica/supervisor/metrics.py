"""Prometheus metrics, in the text exposition format (``semctl metrics``, ``/metrics``).

prometheus_client writes the format. The counters and the duration histogram
are counted as jobs end; the gauges (jobs by state, workers by state) are read
from the store and the pool when a scrape asks, so they are never stale.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from semantica.models import JobState

# Job durations span milliseconds (no-op handlers) to hours (builds).
DURATION_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.5,
    1,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    float("inf"),
)


_COMMITS = "semantica_store_commits", "Transactions committed to the job store."
_WRITES = "semantica_store_writes", "Writes to the job store (several share a commit)."
_FINISHED = "semantica_jobs_finished", "Jobs that reached a finished state, by type and state."
_ENQUEUED = "semantica_enqueued", "Jobs added (deduplicated ones not counted)."
_DEPENDENCY_FAILED = (
    "semantica_jobs_dependency_failed",
    "Jobs cancelled because a job they waited for (--after) did not end DONE.",
)
#: The state of a job that ended DONE, as the counters key it (a plain string).
_DONE = JobState.DONE.value
_DURATION = "semantica_job_duration_seconds", "How long each attempt ran, whatever its outcome."
_JOBS = "semantica_jobs", "Jobs in the store by state."
_WORKERS = "semantica_workers", "Worker processes by state."
_NODES = "semantica_nodes", "Nodes sharing the store by state (alive, dead, gone lately)."
_CLUSTER_WORKERS = (
    "semantica_cluster_workers",
    "Worker processes of every live node by node and state (others' as of their last heartbeat).",
)
_SLOTS = "semantica_schedule_slots", "Schedule slots decided, by outcome (fired, skipped, missed)."
_SCHEDULES = "semantica_schedules", "Schedules by state (active, paused)."
_LOG_DROPPED = (
    "semantica_log_lines_dropped",
    "Supervisor log lines stderr's reader did not take in time (daemon.log has them).",
)

Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
#: Nodes by state, and every live node's workers by (node, state).
Cluster = tuple[dict[str, int], dict[tuple[str, str], int]]


class Metrics(Collector):
    """The supervisor's metrics: counted as jobs move, written out when scraped.

    The counters are plain integers rather than prometheus_client's Counter
    and Histogram: those take a lock and look up their label set on every
    update, a few microseconds that every job's end would pay. The supervisor
    updates them from its one event-loop thread; a scrape reads them there too.
    """

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        workers: Callable[[], dict[str, int]],
        commits: Callable[[], tuple[int, int]] = lambda: (0, 0),
        log_dropped: Callable[[], int] = lambda: 0,
        cluster: Callable[[], Cluster] = lambda: ({}, {}),
        schedules: Callable[[], dict[str, int]] = lambda: {},
    ) -> None:
        self._counts = counts
        self._workers = workers
        self._commits = commits
        self._log_dropped = log_dropped
        self._cluster = cluster
        self._schedules = schedules
        self._slots = {"fired": 0, "skipped": 0, "missed": 0}
        self._finished: dict[tuple[str, str], int] = {}
        self._enqueued = 0
        self._dependency_failed = 0
        self._buckets = [0] * len(DURATION_BUCKETS)  # attempts per bucket (not cumulative)
        self._duration_sum = 0.0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def enqueued(self, count: int) -> None:
        """``count`` new jobs were added."""
        self._enqueued += count

    def schedule_slots(self, fired: int, skipped: int, missed: int) -> None:
        """Schedule slots were decided: so many fired, were skipped, were missed."""
        self._slots["fired"] += fired
        self._slots["skipped"] += skipped
        self._slots["missed"] += missed

    def job_ended(self, type: str, state: JobState, duration_s: float) -> None:
        """An attempt ended; ``state`` is the job's state after it."""
        self._buckets[bisect.bisect_left(DURATION_BUCKETS, duration_s)] += 1
        self._duration_sum += duration_s
        if state is not JobState.QUEUED:
            key = (type, state.value)
            self._finished[key] = self._finished.get(key, 0) + 1

    def jobs_done(self, ends: Sequence[tuple[str, float]]) -> None:
        """Attempts that ended their jobs DONE, as (type, duration_s) each: :meth:`job_ended`
        of each, with what is per batch looked up once (a drain ends thousands a second)."""
        buckets, finished, bisect_left = self._buckets, self._finished, bisect.bisect_left
        total = 0.0
        for type, duration_s in ends:
            buckets[bisect_left(DURATION_BUCKETS, duration_s)] += 1
            total += duration_s
            key = (type, _DONE)
            finished[key] = finished.get(key, 0) + 1
        self._duration_sum += total

    def job_finished_unrun(self, type: str, state: JobState) -> None:
        """A job finished without an attempt (cancelled or superseded while queued)."""
        key = (type, state.value)
        self._finished[key] = self._finished.get(key, 0) + 1

    def dependency_failed(self, count: int = 1) -> None:
        """Jobs were cancelled because a job they waited for ended badly."""
        self._dependency_failed += count

    def text(self) -> str:
        """The exposition, as Prometheus scrapes it."""
        return generate_latest(self.registry).decode()

    def describe(self) -> Iterator[Family]:
        # Named without reading values: registration must not touch the store or pool.
        yield CounterMetricFamily(*_FINISHED, labels=["type", "state"])
        yield CounterMetricFamily(*_ENQUEUED)
        yield CounterMetricFamily(*_DEPENDENCY_FAILED)
        yield HistogramMetricFamily(*_DURATION)
        yield GaugeMetricFamily(*_JOBS, labels=["state"])
        yield GaugeMetricFamily(*_WORKERS, labels=["state"])
        yield CounterMetricFamily(*_COMMITS)
        yield CounterMetricFamily(*_WRITES)
        yield CounterMetricFamily(*_LOG_DROPPED)
        yield GaugeMetricFamily(*_NODES, labels=["state"])
        yield GaugeMetricFamily(*_CLUSTER_WORKERS, labels=["node", "state"])
        yield CounterMetricFamily(*_SLOTS, labels=["outcome"])
        yield GaugeMetricFamily(*_SCHEDULES, labels=["state"])

    def collect(self) -> Iterator[Family]:
        finished = CounterMetricFamily(*_FINISHED, labels=["type", "state"])
        for (type_, state), n in sorted(self._finished.items()):
            finished.add_metric([type_, state], n)
        yield finished
        yield CounterMetricFamily(*_ENQUEUED, value=self._enqueued)
        yield CounterMetricFamily(*_DEPENDENCY_FAILED, value=self._dependency_failed)
        cumulative = itertools.accumulate(self._buckets)
        yield HistogramMetricFamily(
            *_DURATION,
            buckets=[
                (floatToGoString(bound), n)  # type: ignore[no-untyped-call]
                for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)
            ],
            sum_value=self._duration_sum,
        )
        jobs = GaugeMetricFamily(*_JOBS, labels=["state"])
        for state, n in self._counts().items():
            jobs.add_metric([state], n)
        yield jobs
        workers = GaugeMetricFamily(*_WORKERS, labels=["state"])
        for state, n in self._workers().items():
            workers.add_metric([state], n)
        yield workers
        commits, writes = self._commits()
        yield CounterMetricFamily(*_COMMITS, value=commits)
        yield CounterMetricFamily(*_WRITES, value=writes)
        yield CounterMetricFamily(*_LOG_DROPPED, value=self._log_dropped())
        node_states, node_workers = self._cluster()
        nodes = GaugeMetricFamily(*_NODES, labels=["state"])
        for state, n in sorted(node_states.items()):
            nodes.add_metric([state], n)
        yield nodes
        cluster_workers = GaugeMetricFamily(*_CLUSTER_WORKERS, labels=["node", "state"])
        for (node, state), n in sorted(node_workers.items()):
            cluster_workers.add_metric([node, state], n)
        yield cluster_workers
        slots = CounterMetricFamily(*_SLOTS, labels=["outcome"])
        for outcome, n in self._slots.items():
            slots.add_metric([outcome], n)
        yield slots
        schedules = GaugeMetricFamily(*_SCHEDULES, labels=["state"])
        for state, n in sorted(self._schedules().items()):
            schedules.add_metric([state], n)
        yield schedules
