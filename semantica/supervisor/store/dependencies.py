"""The rules of dependencies between jobs, for any backend: no SQL here.

A job may wait for other jobs (``--after``: until each is DONE; ``--after-end``:
until each has ended, however). The store keeps one edge per pair (the job, the
job it waits for, the mode, and a status: ``waiting``, ``met`` or ``failed``) and
counts a job's waiting edges on the job itself; a lease takes no job whose count
is not 0 (start_rules: ``dependency``, the first rule).

What an end does to the edges towards the job that ended is stated once, here
(:func:`edge_status`): DONE meets every edge, any other end meets the ``end``
edges and fails the ``done`` ones. A failed edge cancels its waiting job
(``dependency_failed``, naming the job and its end: :func:`failure`), whose own
end then fails the edges towards it, and so on down: a backend resolves them a
level at a time, in the same transaction as the end (never by recursion).

A retry with dependents (:func:`revivable`) brings back the jobs cancelled because
of the job retried, down the chain, except a job that also waits for another
job that ended badly and is not brought back with them, and a job of a subject
a newer generation of which is queued, running or DONE (a plain retry of it is
refused: the newer one wins); the jobs waiting for one left out stay too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from semantica.errors import BadInput
from semantica.models import DependencyMode, ErrorKind, JobState

WAITING, MET, FAILED = "waiting", "met", "failed"

#: The ends that fail a ``done`` edge.
BAD_ENDS = frozenset({JobState.FAILED.value, JobState.CANCELLED.value, JobState.SUPERSEDED.value})


def edge_status(state: str, mode: str) -> str:
    """The status of an edge towards a job in ``state`` (as read now): ``met`` once
    it is DONE (or ended at all, for ``end``), ``failed`` if it ended otherwise
    than a ``done`` edge needs, else ``waiting``. (A job waited for is never
    missing: retention deletes its edges with it, both ways.)"""
    if state == JobState.DONE.value:
        return MET
    if state in BAD_ENDS:
        return MET if mode == DependencyMode.END.value else FAILED
    return WAITING


def failure(after_id: int, state: str) -> tuple[str, str]:
    """The error (kind, message) of a job cancelled because job ``after_id`` ended in
    ``state``."""
    return ErrorKind.DEPENDENCY_FAILED.value, f"job {after_id} ended {state}"


def failed_dependency(job_id: int, edges: Iterable[tuple[int, str, str]]) -> None:
    """Refuse a plain retry of ``job_id`` while a job it waits for (``done``) ended badly.

    ``edges``: (the job waited for, the mode, that job's state now) for each edge of
    the job.

    Raises:
        BadInput: one line naming the job and how to bring both back.
    """
    for after_id, mode, state in edges:
        if mode == DependencyMode.DONE.value and state in BAD_ENDS:
            raise BadInput(
                f"job {job_id} waits for job {after_id}, which ended {state}: "
                f"retry {after_id} --dependents"
            )


def revivable(
    root: int,
    dependents: Mapping[int, list[int]],
    edges: Mapping[int, list[tuple[int, str, str]]],
    outdated: Collection[int] = (),
) -> list[int]:
    """The jobs a retry of ``root`` with dependents brings back, nearest first.

    ``dependents``: for each job reached, the jobs cancelled because of it (their edge
    towards it failed, and they are CANCELLED with ``dependency_failed``);
    ``edges``: for each of those, every edge it has (as :func:`failed_dependency`);
    ``outdated``: those a newer generation of whose subject is queued, running or
    DONE. A job is brought back unless it is outdated, or a ``done`` edge of it points
    at a job that ended badly and is not brought back; leaving one out may leave out
    those below it.
    """
    reached: list[int] = []
    seen = {root}
    frontier = [root]
    while frontier:
        nxt = []
        for job_id in frontier:
            for dependent in dependents.get(job_id, ()):
                if dependent not in seen:
                    seen.add(dependent)
                    reached.append(dependent)
                    nxt.append(dependent)
        frontier = nxt
    back = {root, *reached} - set(outdated)
    changed = True
    while changed:
        changed = False
        for job_id in reached:
            if job_id not in back:
                continue
            for after_id, mode, state in edges.get(job_id, ()):
                if after_id in back or mode != DependencyMode.DONE.value:
                    continue
                if state in BAD_ENDS:
                    back.discard(job_id)
                    changed = True
                    break
    return [job_id for job_id in reached if job_id in back]
