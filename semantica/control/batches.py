"""``enqueue_many`` of any size: jobs split into requests under the frame cap.

Both clients use this module. The contract:

* Every job is checked (``make_spec``) and the whole batch is split
  (:func:`split`) before anything is sent, so a malformed job, or one that
  alone would make a request over the frame cap, raises ``BadInput`` and adds
  nothing.
* Requests are packed in order by *encoded size* and count: up to
  ``ENQUEUE_ATOMIC_JOBS`` (512) small jobs share one request, jobs with large
  payloads get fewer.
* Each request is one transaction (the supervisor writes a request of more
  than 512 jobs in slices), and a client sends the next only once the one
  before is committed, or pipelined to a supervisor that refuses a request
  whose predecessor failed (enqueue_pipe.py). So what is committed is always
  the first N jobs given, in order, and the subject rules (superseding, generations) apply
  across requests in that order (though a job of an earlier request may have
  started, and so not be superseded, by the time a later one arrives).
* A graph (jobs with a ``ref`` that others wait for) is one request, or
  nothing (:func:`split_graph`): its refs mean something only within one.
* Each request asks for a brief reply (ids, and whole jobs only where the
  supervisor did more than add the spec): :func:`jobs_of` builds the jobs the
  caller gets, the same as whole ones, for a few bytes a job on the wire.
* When a request fails after earlier ones were committed, the client raises
  :class:`PartialEnqueue`, which carries the committed jobs, so that the caller
  can send the rest again. When the first request fails, nothing was added and
  its error is raised as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from semantica.errors import BadInput, ProtocolError, SemanticaError, Unreachable
from semantica.fresh_jobs import alike_key, fresh_job, start_time
from semantica.models import Job, JobSpec
from semantica.protocol import ENQUEUE_ATOMIC_JOBS, Enqueue, Enqueued

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
_replace = msgspec.structs.replace

# The largest rid and the largest msgpack array header (array 32): a request's
# size without its jobs never exceeds this.
_EMPTY_REQUEST = len(msgspec.msgpack.encode(Enqueue(jobs=[], rid=2**64 - 1))) - 1 + 5


class PartialEnqueue(SemanticaError):
    """``enqueue_many`` sent its jobs in several requests, and one failed after others
    were committed.

    Attributes:
        enqueued: the committed jobs: the first ``len(enqueued)`` of those given, in order.
        error: what stopped the rest (also ``__cause__``).
        in_doubt: how many jobs right after ``enqueued`` may have been added too: those
            of a request whose answer never came because the connection was lost
            (``error`` is ``Unreachable``); 0 otherwise. The jobs after those were not.
        total: how many jobs were given.
    """

    code = "partial_enqueue"

    def __init__(
        self, enqueued: list[Job], total: int, error: SemanticaError, in_doubt: int = 0
    ) -> None:
        doubt = f" ({in_doubt} more may have been: the connection was lost)" if in_doubt else ""
        super().__init__(
            f"{len(enqueued)} of {total} jobs were enqueued{doubt}; "
            f"the rest were not: {error.message}"
        )
        self.enqueued = enqueued
        self.total = total
        self.error = error
        self.in_doubt = in_doubt


def split(
    specs: list[JobSpec], limit: int, max_jobs: int = ENQUEUE_ATOMIC_JOBS
) -> list[list[JobSpec]]:
    """``specs`` in order, as the jobs of requests of at most ``limit`` bytes and
    ``max_jobs`` jobs each.

    An empty list gives one empty request (which the supervisor refuses, as
    it always has).

    Raises:
        BadInput: one job alone makes a request over ``limit`` (nothing may be sent).
    """
    requests: list[list[JobSpec]] = [[]]
    size = _EMPTY_REQUEST
    encoder = msgspec.msgpack.Encoder()
    index = 0
    while index < len(specs):
        if not requests[-1]:
            # A request's worth of jobs measured in one go: if they fit, they are the
            # request the job-by-job packing below would make (it closes at max_jobs).
            group = specs[index : index + max_jobs]
            try:
                group_size = len(encoder.encode(group)) - _array_header(len(group))
            except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
                group_size = limit  # measured job by job, which names the bad one
            if _EMPTY_REQUEST + group_size <= limit:
                requests[-1] = group
                if index + len(group) < len(specs):
                    requests.append([])
                index += len(group)
                continue
        spec = specs[index]
        try:
            spec_size = len(encoder.encode(spec))
        except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError) as exc:
            # msgpack carries neither an int past 64 bits nor a str with a lone surrogate.
            raise BadInput(f"cannot send this request: {exc}") from None
        if _EMPTY_REQUEST + spec_size > limit:
            which = f"the job at index {index}: " if len(specs) > 1 else ""
            raise BadInput(
                f"{which}request of {_EMPTY_REQUEST + spec_size} bytes exceeds the "
                f"{limit}-byte frame limit; send a smaller payload"
            )
        if size + spec_size > limit or len(requests[-1]) == max_jobs:
            requests.append([])
            size = _EMPTY_REQUEST
            continue  # the next request begins with this job (measured with others if it can)
        requests[-1].append(spec)
        size += spec_size
        index += 1
    return requests


def _array_header(count: int) -> int:
    """The bytes of a msgpack array header for ``count`` items."""
    return 1 if count < 16 else 3 if count < 1 << 16 else 5


def is_graph(specs: list[JobSpec]) -> bool:
    """Whether jobs of ``specs`` name one another (a ``ref``, or a ref in ``after``)."""
    return any(
        spec.ref is not None
        or (
            (spec.after or spec.after_end)  # (most jobs wait for nothing: no tuple to make)
            and any(isinstance(x, str) for x in (*spec.after, *spec.after_end))
        )
        for spec in specs
    )


def split_graph(
    specs: list[JobSpec], limit: int, max_jobs: int = ENQUEUE_ATOMIC_JOBS
) -> list[list[JobSpec]]:
    """:func:`split`, but a graph (:func:`is_graph`) stays one request: its refs mean
    something only within one, and it is written all or nothing.

    Raises:
        BadInput: as :func:`split`, or a graph does not fit in one request.
    """
    requests = split(specs, limit, max_jobs)
    if len(requests) > 1 and is_graph(specs):
        raise BadInput(
            f"jobs that name one another (ref) go in one request: at most {max_jobs} jobs "
            f"and {limit} bytes; these {len(specs)} do not fit"
        )
    return requests


def jobs_of(specs: list[JobSpec], reply: Enqueued) -> list[Job]:
    """The jobs of an enqueue of ``specs``, from its reply: whole jobs as they came, and
    those of a brief reply (``Enqueued.ids``) built from the specs as the supervisor
    built them (:func:`~semantica.models.fresh_job`).

    Raises:
        ProtocolError: the reply does not name as many jobs as were sent.
    """
    if not reply.ids:
        return reply.jobs  # whole jobs (a supervisor that does not know brief replies)
    if not len(reply.ids) == len(reply.waiting) == len(specs) or len(reply.whole) != len(
        reply.jobs
    ):
        raise ProtocolError(f"the supervisor answered {len(specs)} jobs with {len(reply.ids)}")
    whole = dict(zip(reply.whole, reply.jobs, strict=True))
    now = reply.added_at
    created_at = datetime.fromtimestamp(now, UTC)
    payloads = _json_decode(_json_encode([spec.payload for spec in specs]))  # as stored
    # Jobs alike but for id, payload and reason are copies of one (in C).
    alike: dict[tuple[Any, ...], Job] = {}
    jobs: list[Job] = []
    for n, (spec, job_id, payload, waiting) in enumerate(
        zip(specs, reply.ids, payloads, reply.waiting, strict=True)
    ):
        job = whole.get(n)
        if job is None:
            run_after = start_time(spec, now)
            key = alike_key(spec, run_after)
            model = alike.get(key)
            if model is None:
                model = alike[key] = fresh_job(0, spec, None, None, now, created_at, run_after)
            job = _replace(model, id=job_id, payload=payload, waiting_for=waiting)
        jobs.append(job)
    return jobs


def failed_part_way(
    enqueued: list[Job], total: int, unanswered: int, error: SemanticaError
) -> SemanticaError:
    """What to raise when a request fails: ``error`` itself if nothing was committed
    before it, else a :class:`PartialEnqueue` (``unanswered``: the failed request's jobs)."""
    if not enqueued:
        return error
    in_doubt = unanswered if isinstance(error, Unreachable) else 0
    return PartialEnqueue(enqueued, total, error, in_doubt)


def check_supervisor_can_wait(specs: list[JobSpec], features: Sequence[str], pid: int) -> None:
    """Refuse specs that wait for other jobs when the supervisor does not say it can
    (``HelloOk.features``): an older one would drop ``after`` and run them at once.

    Raises:
        BadInput: one line, saying to restart the supervisor (nothing was sent).
    """
    if "after" in features:
        return
    if any(spec.after or spec.after_end or spec.ref is not None for spec in specs):
        raise BadInput(
            f"the supervisor (pid {pid}) runs an older Semantica that cannot make a job "
            "wait for others (--after): restart it (semctl shutdown, then start it again)"
        )
