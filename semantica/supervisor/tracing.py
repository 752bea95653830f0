"""Optional tracing: one OpenTelemetry span per job attempt, exported over OTLP.

Active only when the ``semantica[otel]`` extra is installed *and*
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; otherwise :func:`make_tracer` returns
a tracer that does nothing, and no OpenTelemetry module is ever imported.

A span runs from the moment the attempt could start (the job's enqueue for a
first attempt, the attempt's start for a retry) to its end, with an event
``started`` when a worker took it, and the job's id, type, queue, attempt,
final state and error as attributes.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol

from semantica.models import JobError, JobState
from semantica.supervisor.store import Lease


class Tracer(Protocol):
    """What the job lifecycle reports to tracing."""

    def attempt_started(self, lease: Lease, worker_pid: int) -> None: ...

    def attempt_ended(self, lease: Lease, state: JobState, error: JobError | None) -> None: ...


class NoTracer:
    """Tracing off: every call does nothing."""

    def attempt_started(self, lease: Lease, worker_pid: int) -> None:
        return None

    def attempt_ended(self, lease: Lease, state: JobState, error: JobError | None) -> None:
        return None


class OtelTracer:
    """Spans through an OpenTelemetry tracer provider (given, or built for OTLP)."""

    def __init__(self, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        if provider is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider = TracerProvider(resource=Resource.create({"service.name": "semantica"}))
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.provider = provider
        self._tracer = trace.get_tracer("semantica", tracer_provider=provider)
        self._status, self._code = Status, StatusCode
        self._spans: dict[int, Any] = {}

    def attempt_started(self, lease: Lease, worker_pid: int) -> None:
        now_ns = time.time_ns()
        start_ns = int(lease.created_at * 1e9) if lease.attempt == 1 else now_ns
        span = self._tracer.start_span(
            f"job {lease.type}",
            start_time=min(start_ns, now_ns),
            attributes={
                "semantica.job.id": lease.job_id,
                "semantica.job.type": lease.type,
                "semantica.job.queue": lease.queue,
                "semantica.job.attempt": lease.attempt,
                "semantica.job.max_attempts": lease.max_attempts,
                "semantica.worker.pid": worker_pid,
            },
        )
        span.add_event("started", timestamp=now_ns)
        self._spans[lease.lease_id] = span

    def attempt_ended(self, lease: Lease, state: JobState, error: JobError | None) -> None:
        span = self._spans.pop(lease.lease_id, None)
        if span is None:
            return
        span.set_attribute("semantica.job.state", state.value)
        if error is not None:
            span.set_attribute("semantica.error.kind", error.kind)
            span.set_attribute("semantica.error.message", error.message)
            span.set_status(self._status(self._code.ERROR, f"{error.kind}: {error.message}"))
        else:
            span.set_status(self._status(self._code.OK))
        span.end()

    def shutdown(self) -> None:
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def make_tracer() -> Tracer:
    """The OTLP tracer if configured and installed, else one that does nothing."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return NoTracer()
    try:
        return OtelTracer()
    except ImportError:
        import structlog

        structlog.get_logger("semantica.tracing").warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed; "
            "pip install 'semantica[otel]'"
        )
        return NoTracer()
