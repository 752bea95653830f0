"""Prometheus metrics, in the text exposition format (``semctl metrics``, ``/metrics``).

prometheus_client writes the format. Counters and the duration histogram are
updated as jobs end; the gauges (jobs by state, workers by state) are read
from the store and the pool when a scrape asks, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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


class _Gauges(Collector):
    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        workers: Callable[[], dict[str, int]],
        commits: Callable[[], tuple[int, int]],
    ) -> None:
        self._counts = counts
        self._workers = workers
        self._commits = commits

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        # Named without reading values: registration must not touch the store or pool.
        yield GaugeMetricFamily("semantica_jobs", "Jobs in the store by state.", labels=["state"])
        yield GaugeMetricFamily("semantica_workers", "Worker processes by state.", labels=["state"])
        yield CounterMetricFamily(*_COMMITS)
        yield CounterMetricFamily(*_WRITES)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        jobs = GaugeMetricFamily("semantica_jobs", "Jobs in the store by state.", labels=["state"])
        for state, n in self._counts().items():
            jobs.add_metric([state], n)
        yield jobs
        workers = GaugeMetricFamily(
            "semantica_workers", "Worker processes by state.", labels=["state"]
        )
        for state, n in self._workers().items():
            workers.add_metric([state], n)
        yield workers
        commits, writes = self._commits()
        yield CounterMetricFamily(*_COMMITS, value=commits)
        yield CounterMetricFamily(*_WRITES, value=writes)


class Metrics:
    """The supervisor's metrics registry."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        workers: Callable[[], dict[str, int]],
        commits: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created: noise here
        self.registry = CollectorRegistry(auto_describe=True)
        self.finished = Counter(
            "semantica_jobs_finished",
            "Jobs that reached a finished state, by type and state.",
            ["type", "state"],
            registry=self.registry,
        )
        self.enqueued = Counter(
            "semantica_enqueued",
            "Jobs added (deduplicated ones not counted).",
            registry=self.registry,
        )
        self.duration = Histogram(
            "semantica_job_duration_seconds",
            "How long each attempt ran, whatever its outcome.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Gauges(counts, workers, commits))

    def job_ended(self, type: str, state: JobState, duration_s: float) -> None:
        """An attempt ended; ``state`` is the job's state after it."""
        self.duration.observe(duration_s)
        if state != JobState.QUEUED:
            self.finished.labels(type=type, state=state.value).inc()

    def job_finished_unrun(self, type: str, state: JobState) -> None:
        """A job finished without an attempt (cancelled or superseded while queued)."""
        self.finished.labels(type=type, state=state.value).inc()

    def text(self) -> str:
        """The exposition, as Prometheus scrapes it."""
        return generate_latest(self.registry).decode()
