"""enqueue_many's split into requests: under the cap by encoded size, in order, whole."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantica.control.batches import PartialEnqueue, failed_part_way, split
from semantica.errors import BadInput, StoreFull, Unreachable
from semantica.models import JobSpec
from semantica.protocol import ENQUEUE_ATOMIC_JOBS, Enqueue

LIMIT = 4096


def _body(specs: list[JobSpec]) -> int:
    """The encoded size of the request the client sends for ``specs``, at its largest rid."""
    return len(msgspec.msgpack.encode(Enqueue(jobs=specs, rid=2**64 - 1)))


@given(st.lists(st.integers(min_value=0, max_value=LIMIT - 200), max_size=60))
def test_requests_keep_the_order_and_stay_under_the_cap(sizes: list[int]) -> None:
    specs = [JobSpec(type="T", payload="x" * size) for size in sizes]
    requests = split(specs, LIMIT)
    assert [spec for request in requests for spec in request] == specs
    assert all(_body(request) <= LIMIT for request in requests)
    # Packed greedily: the next request's first job would not have fitted in the one before.
    for before, after in itertools.pairwise(requests):
        assert _body([*before, after[0]]) > LIMIT - 5  # (within the array header's slack)


def test_no_request_holds_more_jobs_than_one_transaction_takes() -> None:
    """The supervisor writes an Enqueue of more than ENQUEUE_ATOMIC_JOBS jobs in slices, not
    as one transaction: the clients never send one, so each of their requests is atomic."""
    specs = [JobSpec(type="T") for _ in range(3 * ENQUEUE_ATOMIC_JOBS + 1)]
    requests = split(specs, 1 << 20)
    assert [len(request) for request in requests] == [ENQUEUE_ATOMIC_JOBS] * 3 + [1]


def test_no_jobs_make_one_empty_request() -> None:
    assert split([], LIMIT) == [[]]


def test_one_job_over_the_cap_is_named() -> None:
    specs = [JobSpec(type="T"), JobSpec(type="T", payload="x" * LIMIT)]
    with pytest.raises(BadInput, match=r"^the job at index 1: request of \d+ bytes exceeds "):
        split(specs, LIMIT)
    with pytest.raises(BadInput, match=r"^request of \d+ bytes exceeds the 4096-byte frame limit"):
        split(specs[1:], LIMIT)


def test_what_a_failed_request_raises() -> None:
    done = [object()] * 3
    store_full = StoreFull("disk full")
    assert failed_part_way([], 10, 4, store_full) is store_full  # nothing was added
    partial = failed_part_way(done, 10, 4, store_full)  # type: ignore[arg-type]
    assert isinstance(partial, PartialEnqueue) and partial.in_doubt == 0
    assert str(partial) == "3 of 10 jobs were enqueued; the rest were not: disk full"
    lost = failed_part_way(done, 10, 4, Unreachable("gone"))  # type: ignore[arg-type]
    assert isinstance(lost, PartialEnqueue) and lost.in_doubt == 4
    assert "(4 more may have been: the connection was lost)" in str(lost)
