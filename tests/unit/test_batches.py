"""enqueue_many's split into requests: under the cap by encoded size, in order, whole."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantica.control.batches import PartialEnqueue, failed_part_way, split
from semantica.control.client import make_spec, specs_of
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


def _packed_one_by_one(specs: list[JobSpec], limit: int, max_jobs: int) -> list[list[JobSpec]]:
    """The packing split promises: in order, each job in the request before if it fits."""
    empty = len(msgspec.msgpack.encode(Enqueue(jobs=[], rid=2**64 - 1))) - 1 + 5
    requests: list[list[JobSpec]] = [[]]
    size = empty
    for spec in specs:
        spec_size = len(msgspec.msgpack.encode(spec))
        if size + spec_size > limit or len(requests[-1]) == max_jobs:
            requests.append([])
            size = empty
        requests[-1].append(spec)
        size += spec_size
    return requests


@given(
    st.lists(st.integers(min_value=0, max_value=LIMIT // 3), max_size=80),
    st.integers(min_value=1, max_value=20),
)
def test_requests_are_packed_job_by_job_whatever_the_shortcut(
    sizes: list[int], max_jobs: int
) -> None:
    """split measures a request's worth of jobs at once where it can: the requests are
    still those of packing each job into the request before it when it fits."""
    specs = [JobSpec(type="T", payload="x" * size) for size in sizes]
    assert split(specs, LIMIT, max_jobs) == _packed_one_by_one(specs, LIMIT, max_jobs)


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


def _one_by_one(items: list[dict[str, object]]) -> list[JobSpec]:
    return [make_spec(**item) for item in items]  # type: ignore[arg-type]


def test_specs_of_plain_jobs_are_those_make_spec_gives() -> None:
    """enqueue_many's jobs converted in one go are the specs make_spec makes of each,
    a start time without a zone (local time, the long way) among them."""
    items: list[dict[str, object]] = [
        {"type": "T"},
        {"type": "T", "payload": {"n": [1, (2, 3)]}, "priority": -5, "delay": 1.5},
        {"type": "U", "queue": "q", "subject": "s", "generation": 3, "max_attempts": 9},
        {"type": "T", "timeout": 2, "backoff": 0, "require_idle": True, "after": [4, "x"]},
        {"type": "T", "ref": "x", "after_end": [7]},
    ]
    assert specs_of(items) == _one_by_one(items)
    timed = [*items, {"type": "T", "at": "2030-01-02T03:04:05"}]
    assert specs_of(iter(timed)) == _one_by_one(timed)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"payload": 1}, "every job needs a 'type'"),
        ({"type": "T", "colour": "red"}, "unknown enqueue option"),
        ({"type": "T", "priority": "high"}, "bad enqueue option"),
        ({"type": "T", "priority": 10**6}, "priority must be between"),
        ({"type": "T", "payload": {1.5: "x"}}, "object keys must be strings"),
    ],
)
def test_specs_of_a_bad_job_says_what_make_spec_says(item: dict[str, object], message: str) -> None:
    """One bad job among good ones: the error of the job-by-job way, nothing else."""
    with pytest.raises(BadInput, match=message):
        specs_of([{"type": "T"}, item, {"type": "T"}])
