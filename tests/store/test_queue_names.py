"""Which queues a store knows: named by a job or a setting, listed for messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storekit import enqueue

from semantica.errors import BadInput
from semantica.models import GENERATION_MAX, JobSpec
from semantica.supervisor.store import JobStore

Spec = Callable[..., JobSpec]


def test_a_queue_is_known_once_a_job_or_a_setting_names_it(store: JobStore, spec: Spec) -> None:
    """queue_known: a queue a job was enqueued to, or one given a setting, and no other."""
    assert not store.queue_known("default")
    enqueue(store, [spec(queue="jobs")])
    store.set_queue("set", paused=False)
    assert store.queue_known("jobs") and store.queue_known("set")
    assert not store.queue_known("default") and not store.queue_known("other")
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.complete(lease, None)
    assert store.queue_known("jobs")  # its job ended; it was named all the same


def test_an_enqueue_refused_makes_no_queue_known(store: JobStore, spec: Spec) -> None:
    """A batch refused by the store (a subject with no generation left) adds nothing,
    not even the name of a queue."""
    enqueue(store, [spec(subject="s", generation=GENERATION_MAX)])
    with pytest.raises(BadInput, match="generation"):
        enqueue(store, [spec(queue="fresh"), spec(subject="s")])
    assert not store.queue_known("fresh")
    assert [q.name for q in store.queues()] == ["default"]
    assert store.count() == 1


def test_some_queues_names_the_first_and_says_how_many(store: JobStore, spec: Spec) -> None:
    """some_queues, for a message: the first names in name order, and the total if cut."""
    assert store.some_queues() == "none yet"
    store.set_queue("b", limit=1)
    enqueue(store, [spec(queue="c"), spec(queue="a")])
    assert store.some_queues() == "a, b, c"
    assert store.some_queues(3) == "a, b, c"
    assert store.some_queues(2) == "a, b, ... (3 in all)"
    enqueue(store, [spec(queue=f"q{n:02}") for n in range(12)])
    assert store.some_queues() == "a, b, c, q00, q01, q02, q03, q04, q05, q06, ... (15 in all)"
