"""What the conformance tests share: enqueueing as the supervisor does, and common errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from semantica.models import ErrorKind, JobError, JobSpec
from semantica.supervisor.store import EnqueueResult, JobStore, plan, prepare

BOOM = JobError(kind=ErrorKind.EXCEPTION.value, message="ValueError: boom")
STOPPED = JobError(kind=ErrorKind.CANCELLED.value, message="cancelled by the user")


def enqueue(store: JobStore, specs: Sequence[JobSpec]) -> EnqueueResult:
    """Check ``specs`` (BadInput), resolve their dependencies, and insert them in one
    write, as JobLifecycle.enqueue does; the jobs in the order of ``specs``."""
    planned = plan(prepare(specs))
    result = store.insert(planned.prepared)
    result.jobs = planned.in_request_order(result.jobs)
    return result


def ts(seconds: float) -> datetime:
    """A stored time as the store's records show it."""
    return datetime.fromtimestamp(seconds, UTC)
