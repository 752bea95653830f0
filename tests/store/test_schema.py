"""Schema versions as any store shows them: the newest once opened, and migrations that
keep the data. (How versions are kept, backups and refusing a newer schema are each
backend's own: tests/unit/test_migrations.py and test_sqlite_store.py for SQLite.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from storekit import enqueue

from semantica.errors import BadInput
from semantica.models import JobSpec, JobState
from semantica.supervisor.store import JobStore, SchemaChange

Spec = Callable[..., JobSpec]


def test_a_store_opened_for_use_is_at_the_newest_schema(store: JobStore) -> None:
    """The schema a store holds, once migrated, is the newest its code knows."""
    assert store.newest_schema_version >= 1
    assert store.schema_version == store.newest_schema_version


def test_migrating_a_store_at_the_newest_does_nothing(store: JobStore, spec: Spec) -> None:
    """migrate() on a store at the newest schema says so and changes nothing."""
    [job] = enqueue(store, [spec()]).jobs
    newest = store.newest_schema_version
    change = store.migrate()
    assert (change.before, change.after, change.backup) == (newest, newest, None)
    assert store.migrate(newest).after == newest
    assert store.get(job.id) == job


@pytest.mark.parametrize("to", [0, -1, "newest + 1"])
def test_a_version_the_code_does_not_have_is_refused(store: JobStore, to: int | str) -> None:
    """migrate(to) with a version outside 1..newest raises BadInput and changes nothing."""
    target = store.newest_schema_version + 1 if to == "newest + 1" else int(to)
    with pytest.raises(BadInput):
        store.migrate(target)
    assert store.schema_version == store.newest_schema_version


def test_down_and_up_again_keeps_every_job_and_fences_old_leases(
    store: JobStore, spec: Spec
) -> None:
    """Going down a version and up again keeps the jobs as they were; a lease taken after
    is still newer than every lease taken before."""
    newest = store.newest_schema_version
    if newest < 2:
        pytest.skip("one schema version: nowhere to go down to")
    done, running, queued = enqueue(store, [spec(), spec(), spec(payload={"k": [1]})]).jobs
    first = store.lease(worker_pid=1)
    assert first is not None and first.job_id == done.id
    store.complete(first, b'"ok"')
    old = store.lease(worker_pid=1)
    assert old is not None and old.job_id == running.id
    before = store.get_many([done.id, running.id, queued.id])

    down = store.migrate(newest - 1)
    assert (down.before, down.after) == (newest, newest - 1)
    assert store.schema_version == newest - 1
    up = store.migrate()
    assert isinstance(up, SchemaChange)
    assert (up.before, up.after) == (newest - 1, newest)
    assert up.backup is None or up.backup.exists()
    assert store.schema_version == newest

    assert store.get_many([done.id, running.id, queued.id]) == before
    assert store.recover_running() == 1
    lease = store.lease(worker_pid=2)
    assert lease is not None and lease.job_id == running.id
    assert lease.lease_id > old.lease_id
    store.complete(lease, None)
    assert store.state(running.id) == JobState.DONE
