"""Nodes as any store shows them: join, heartbeat, reap, leave, and the changes feed.

On SQLite the store's supervisor is its one node, always alive, and nothing
changes behind its back (no feed); on PostgreSQL nodes share the database
(tests/store/test_postgres_nodes.py has what several of them do).
"""

from __future__ import annotations

from collections.abc import Callable

from storekit import enqueue

from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore, NodeSpec

Spec = Callable[..., JobSpec]


def test_a_joined_store_is_a_node_alive(store: JobStore) -> None:
    """join returns the node id; nodes() lists this node alive with what it joined as."""
    spec = NodeSpec(key="host-a:/state", name="a", host="host-a", pid=42, workers=3)
    node_id = store.join(spec)
    [me] = [node for node in store.nodes() if node.this]
    assert me.node_id == node_id
    assert (me.key, me.name, me.host, me.pid, me.workers) == ("host-a:/state", "a", "host-a", 42, 3)
    assert me.state == "alive" and me.heartbeat_at >= me.started_at


def test_heartbeats_publish_their_detail(store: JobStore) -> None:
    """heartbeat renews this node and publishes its detail; a lone node is never reaped."""
    store.join(NodeSpec(key="k"))
    assert store.heartbeat(b'{"workers": []}') is True
    [me] = [node for node in store.nodes() if node.this]
    assert me.detail == b'{"workers": []}'
    assert store.reap_dead(0.0) == []
    assert store.heartbeat(b"{}") is True


def test_a_store_joins_by_itself_at_its_first_lease(store: JobStore, spec: Spec) -> None:
    """Without a join, a lease joins with the defaults: the store is a node from then on."""
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=1)
    assert lease is not None and lease.job_id == job.id
    assert [node.this for node in store.nodes()] == [True]
    assert store.heartbeat(b"{}") is True
    store.complete(lease, None)
    assert store.state(job.id) == JobState.DONE


def test_leave_after_the_jobs_were_put_back(store: JobStore, spec: Spec) -> None:
    """A clean stop: its jobs put back, then leave; the store reopens as a node again."""
    store.join(NodeSpec(key="k"))
    enqueue(store, [spec()])
    lease = store.lease(worker_pid=1)
    assert lease is not None
    assert store.give_back([lease]) == 1
    store.leave()
    assert all(node.state in ("alive", "gone") for node in store.nodes())


def test_the_changes_feed_is_the_backends(store: JobStore, backend: str) -> None:
    """A single-writer store has no feed; a shared one has, and it starts quiet."""
    feed = store.changes()
    if backend == "sqlite":
        assert feed is None
        return
    assert feed is not None
    try:
        assert feed.wait(0.05) == set()
    finally:
        feed.close()


def test_a_running_job_names_its_node_on_a_shared_store(
    store: JobStore, backend: str, spec: Spec
) -> None:
    """A RUNNING job read back carries the name of the node running it (None on SQLite,
    where every job is its one supervisor's); it loses it when it ends."""
    store.join(NodeSpec(key="host-a:/state", name="alpha"))
    [job] = enqueue(store, [spec()]).jobs
    lease = store.lease(worker_pid=7)
    assert lease is not None
    expected = None if backend == "sqlite" else "alpha"
    assert store.get(job.id).node == expected
    assert [j.node for j in store.list(state="RUNNING")] == [expected]
    assert store.get_page([job.id], None).jobs[0].node == expected
    store.complete(lease, None)
    assert store.get(job.id).node is None
