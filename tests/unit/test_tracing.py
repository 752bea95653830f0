"""Tracing: one span per attempt through OpenTelemetry when asked for, nothing otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_pool import rig

from semantica.supervisor.tracing import NoTracer, OtelTracer, make_tracer


async def test_one_span_per_attempt_with_the_jobs_attributes(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each attempt is a span named after the job type, with id, queue, attempt and outcome."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with rig(tmp_path, tracer=OtelTracer(provider)) as r:
        ok = r.enqueue(type="UP_SLEEP", payload={"seconds": 1}, queue="q1")
        await r.finished(ok)
        bad = r.enqueue(type="UP_FAIL", max_attempts=2, backoff=0)
        await r.finished(bad)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["job UP_SLEEP", "job UP_FAIL", "job UP_FAIL"]
    first = spans[0]
    assert first.attributes is not None
    assert first.attributes["semantica.job.id"] == ok
    assert first.attributes["semantica.job.queue"] == "q1"
    assert first.attributes["semantica.job.state"] == "DONE"
    assert [event.name for event in first.events] == ["started"]
    assert first.status.status_code == StatusCode.OK
    retried, failed = spans[1], spans[2]
    assert retried.attributes is not None and failed.attributes is not None
    assert [
        retried.attributes["semantica.job.attempt"],
        failed.attributes["semantica.job.attempt"],
    ] == [1, 2]
    assert retried.attributes["semantica.job.state"] == "QUEUED"
    assert failed.attributes["semantica.job.state"] == "FAILED"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["semantica.error.kind"] == "exception"


def test_no_endpoint_no_tracing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without OTEL_EXPORTER_OTLP_ENDPOINT the tracer does nothing."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert isinstance(make_tracer(), NoTracer)


def test_the_supervisor_imports_no_opentelemetry_when_tracing_is_off() -> None:
    """Loading the whole supervisor imports nothing of OpenTelemetry unless it is configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = (
        "import sys, semantica.supervisor.app as app\n"
        "from semantica.supervisor.tracing import make_tracer\n"
        "make_tracer()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
