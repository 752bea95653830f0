"""Long texts a store holds come out cut to the caps, whatever was stored.

A row written before the caps (or by an older supervisor) may hold a 24 MB
error or progress message: every read of a job cuts them as the supervisor
would have, so no reply can be made huge by one old row.
"""

from __future__ import annotations

from storekit import enqueue

from semantica.limits import ERROR_MESSAGE_MAX
from semantica.models import JobError, JobSpec
from semantica.supervisor.store import JobStore

MB24 = 24_000_000


def _size(text: str) -> int:
    return len(text.encode())


def test_messages_stored_before_the_caps_are_cut_on_read(store: JobStore) -> None:
    """Rows written before the caps (a 24 MB error, a 24 MB progress message) come out cut,
    in every read: one job, several, a list."""
    enqueue(store, [JobSpec(type="T", max_attempts=1)])
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.set_progress(lease, 0.5, "p" * MB24)  # the store itself does not cut
    store.fail(lease, JobError("exception", "é" * (MB24 // 2)), retry_at=None)

    for job in (store.get(lease.job_id), *store.get_many([lease.job_id]), *store.list()):
        assert job.error is not None
        assert job.error.message.endswith("é… [cut: error message over 16 KiB]")
        assert _size(job.error.message) <= ERROR_MESSAGE_MAX
        assert job.progress_message is not None
        assert job.progress_message.endswith("p… [cut: progress message over 1 KiB]")


def test_a_message_that_fits_in_characters_but_not_in_bytes_is_cut_on_read(
    store: JobStore,
) -> None:
    """A stored message of fewer characters than the cap but more bytes is read whole,
    so its note has its size."""
    enqueue(store, [JobSpec(type="T", max_attempts=1)])
    lease = store.lease(worker_pid=1)
    assert lease is not None
    store.fail(lease, JobError("exception", "€" * 10_000), retry_at=None)
    error = store.get(lease.job_id).error
    assert error is not None
    assert error.message.endswith("€… [cut: 30.0 kB error message, limit 16 KiB]")
