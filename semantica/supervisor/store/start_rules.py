"""When a queued job may start: the one statement of the rules.

A QUEUED job starts when a worker is free and none of these holds it back,
checked in this order (the first that applies is the job's ``waiting_for``):

1. a job it waits for (``--after``, ``--after-end``) has not ended as it must;
2. its start time (``--delay``, ``--at``, a retry's backoff) has not come;
3. its queue is paused;
4. its queue runs as many jobs as its limit allows;
5. another job of its ``(type, subject)`` runs;
6. it requires charging and the machine is on battery;
7. it requires an idle CPU and the CPU is busy.

Among the jobs nothing holds back, the highest priority starts first, then the
oldest (lowest id).

:func:`waiting_reason` is the only code that applies the rules. A store's lease
asks it about every candidate it would take (a backend's query may narrow the
candidates first with the same rules, as an index does, but the decision is
made here), and "why is it waiting" (``semctl show``, ``top``) asks it about
the job shown. :func:`pick` is how a lease asks, for any backend. The store
conformance suite checks the two agree: a leased job
had no reason to wait, and a job left queued when nothing more can be leased
has one.
"""

from __future__ import annotations

import msgspec

from semantica.models import WaitReason


class Blockers(msgspec.Struct):
    """The queue and subject facts that keep queued jobs waiting at one moment."""

    paused: set[str] = msgspec.field(default_factory=set)
    limits: dict[str, int] = msgspec.field(default_factory=dict)  # 0 or absent: no limit
    running_per_queue: dict[str, int] = msgspec.field(default_factory=dict)
    busy_subjects: set[tuple[str, str]] = msgspec.field(default_factory=set)

    def started(self, queue: str, type: str, subject: str | None) -> None:
        """Count a job that has just started (a lease taking several jobs at once)."""
        self.running_per_queue[queue] = self.running_per_queue.get(queue, 0) + 1
        if subject is not None:
            self.busy_subjects.add((type, subject))


def waiting_reason(
    *,
    queue: str,
    type: str,
    subject: str | None,
    run_after: float | None,
    failed_before: bool,
    require_charging: bool,
    require_idle: bool,
    blockers: Blockers,
    now: float,
    on_ac: bool,
    idle: bool,
    unmet: int = 0,
) -> WaitReason | None:
    """The first reason a QUEUED job cannot start now, or None (it may start).

    ``failed_before``: an earlier attempt failed, so a start time still to come
    is a retry's backoff rather than a ``--delay``. ``unmet``: how many of the jobs
    it waits for have not ended as it needs (the store counts them on the job).
    """
    if unmet:
        return WaitReason.DEPENDENCY
    if run_after is not None and run_after > now:
        return WaitReason.RETRY_BACKOFF if failed_before else WaitReason.RUN_AFTER
    if queue in blockers.paused:
        return WaitReason.QUEUE_PAUSED
    limit = blockers.limits.get(queue, 0)
    if limit and blockers.running_per_queue.get(queue, 0) >= limit:
        return WaitReason.QUEUE_LIMIT
    if subject is not None and (type, subject) in blockers.busy_subjects:
        return WaitReason.SUBJECT_BUSY
    if require_charging and not on_ac:
        return WaitReason.CHARGING
    if require_idle and not idle:
        return WaitReason.IDLE
    return None


#: A queued job a lease may take, as a backend read it: ``(-priority, id, type,
#: subject, queue, run_after, require_charging, require_idle, unmet dependencies)``
#: (sorted: start order).
Candidate = tuple[int, int, str, str | None, str, float, bool, bool, int]


def pick(
    candidates: list[Candidate], facts: Blockers, count: int, now: float, on_ac: bool, idle: bool
) -> list[Candidate]:
    """The first ``count`` candidates the rules let start, in start order, counting
    those picked before as running (``facts`` is updated with them)."""
    picked: list[Candidate] = []
    for candidate in sorted(candidates):
        if len(picked) == count:
            break
        _, _, type_, subject, queue, run_after, charging, idle_, unmet = candidate
        reason = waiting_reason(
            queue=queue,
            type=type_,
            subject=subject,
            run_after=run_after,
            failed_before=False,  # (which of the two time reasons does not matter here)
            require_charging=bool(charging),
            require_idle=bool(idle_),
            blockers=facts,
            now=now,
            on_ac=on_ac,
            idle=idle,
            unmet=unmet,
        )
        if reason is None:
            facts.started(queue, type_, subject)
            picked.append(candidate)
    return picked
