"""What a job store takes and returns, and how it fails: plain records, no database.

Every backend speaks these; nothing here knows SQL. A :class:`Prepared` spec is
the only way a job enters a store: :func:`prepare` checks it once, before the
store, and the store trusts what it is given.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

import semantica
from semantica.errors import BadInput, StoreError
from semantica.models import QUEUE_LIMIT_MAX, Job, JobSpec, validate_queue_name, validate_spec


class SchemaTooNew(StoreError):
    """The database was written by a newer Semantica; it is left untouched."""


class StaleLease(StoreError):
    """A message named a lease that is no longer the job's current one; nothing changed."""

    code = "stale_lease"


class Edge(msgspec.Struct, frozen=True, gc=False):
    """A job a prepared job waits for: a job id, or (``local``) the place of another job
    of the same insert, earlier in it; ``mode`` a :class:`~semantica.models.DependencyMode`."""

    target: int
    mode: str
    local: bool = False


class Prepared(msgspec.Struct, frozen=True, gc=False):
    """A spec checked by :func:`prepare`, with its payload as JSON text, and the jobs it
    waits for resolved (``graph.plan``; empty: it waits for none).

    (Not a tuple: a big request holds 100,000 of them, which Python's cyclic
    GC would walk in every full collection; these it does not track.)
    """

    spec: JobSpec
    payload: str
    edges: tuple[Edge, ...] = ()


_json_encode = msgspec.json.encode


def prepare(specs: Sequence[JobSpec]) -> list[Prepared]:
    """Check each spec and encode its payload, without touching any store.

    A caller with many specs prepares them all (in pieces, if it likes)
    before it inserts any, so that a bad one adds nothing.

    Raises:
        BadInput: a spec is invalid.
    """
    prepared = []
    for spec in specs:
        validate_spec(spec)
        try:
            payload = _json_encode(spec.payload).decode()
        except (TypeError, msgspec.EncodeError) as exc:
            raise BadInput(f"payload is not JSON: {exc}") from None
        prepared.append(Prepared(spec, payload))
    return prepared


class EnqueueResult(msgspec.Struct):
    """What an enqueue did: the jobs (new or deduplicated) and the jobs it replaced.

    A new job that waits for a job already ended badly is in ``jobs`` as CANCELLED
    (``dependency_failed``), and among the store's cascaded ends (``take_cascaded``).
    """

    jobs: list[Job] = msgspec.field(default_factory=list)
    superseded: list[int] = msgspec.field(default_factory=list)  # QUEUED -> SUPERSEDED
    # (running older job, the new job): to cancel for --supersede-running
    running_older: list[tuple[int, int]] = msgspec.field(default_factory=list)
    #: The store's time of the insert, as its clock gave it: the new jobs' ``created_at``
    #: (which is this, to the microsecond) and what their ``run_after`` was counted from.
    added_at: float | None = None


class Fired(msgspec.Struct):
    """What :meth:`JobStore.fire_due` did: the jobs its slots made (as an enqueue's
    result), and how many slots fired, were skipped (the previous job still live) and
    were missed (no job: catch-up, or a job the store refused to make)."""

    result: EnqueueResult = msgspec.field(default_factory=EnqueueResult)
    fired: int = 0
    skipped: int = 0
    missed: int = 0
    #: (schedule, why) for each slot whose job the store refused (counted in ``missed``).
    refused: list[tuple[str, str]] = msgspec.field(default_factory=list)


class SchemaChange(msgspec.Struct):
    """What :meth:`JobStore.migrate` did: from which schema version to which."""

    before: int  # 0: the database was new, and its schema was made from nothing
    after: int
    backup: Path | None = None  # the copy taken before going up, if one was
    seconds: float = 0.0  # how long it took, the backup included


class Page(msgspec.Struct):
    """Jobs read within a byte budget: ``more`` if the budget stopped the read early."""

    jobs: list[Job]
    more: bool = False


class Lease(msgspec.Struct, frozen=True):
    """A job handed to a worker: what the worker needs to run one attempt.

    ``lease_id`` fences the attempt: every later move of the job names it,
    and a move under a lease that is no longer the job's current one changes
    nothing (:class:`StaleLease`). A store gives each lease an id no earlier
    lease of the job had.
    """

    lease_id: int
    job_id: int
    type: str
    queue: str
    payload: bytes  # JSON text
    attempt: int
    max_attempts: int
    timeout: float | None
    backoff: float | None
    created_at: float = 0.0


def check_queue_setting(name: str, limit: int | None) -> None:
    """Check a queue's name and limit before a store sets them.

    Raises:
        BadInput: a bad queue name, or a limit outside 0..QUEUE_LIMIT_MAX.
    """
    validate_queue_name(name)
    if limit is not None and not 0 <= limit <= QUEUE_LIMIT_MAX:
        raise BadInput(f"limit must be between 0 and {QUEUE_LIMIT_MAX}, got {limit}")


def _hostname() -> str:
    return socket.gethostname()


class NodeSpec(msgspec.Struct, frozen=True):
    """A supervisor registering as a node of a shared store (:meth:`JobStore.join`).

    ``key`` names one supervisor across its restarts (its host and state
    directory): a join with the key of an earlier registration takes it over.
    """

    key: str = msgspec.field(default_factory=_hostname)
    name: str = msgspec.field(default_factory=_hostname)
    host: str = msgspec.field(default_factory=_hostname)
    pid: int = msgspec.field(default_factory=os.getpid)
    version: str = semantica.__version__
    workers: int = 0


class NodeInfo(msgspec.Struct):
    """A node as :meth:`JobStore.nodes` shows it; times are Unix seconds (the
    database's clock). ``this``: the node of the store asked."""

    node_id: int
    key: str
    name: str
    host: str
    pid: int
    version: str
    workers: int
    started_at: float
    heartbeat_at: float
    state: Literal["alive", "dead", "gone"]
    detail: bytes = b""
    this: bool = False
