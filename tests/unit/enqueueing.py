"""Enqueue straight into a store, as the supervisor does: specs checked first, then inserted."""

from __future__ import annotations

from collections.abc import Sequence

from semantica.models import JobSpec
from semantica.supervisor.store import EnqueueResult, JobStore, prepare


def enqueue(store: JobStore, specs: Sequence[JobSpec]) -> EnqueueResult:
    """Check ``specs`` (BadInput) and insert them in one write, as JobLifecycle.enqueue does."""
    return store.insert(prepare(specs))
