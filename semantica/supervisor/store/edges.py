"""Dependency edges in SQL, for both backends: adding them, resolving them at an end,
reviving them at a retry, reading them for ``show``.

The rules are :mod:`~semantica.supervisor.store.dependencies`'; this module only
reads and writes the ``job_deps`` table and the jobs' ``deps_unmet`` count (see
``sql/008_dependencies.sql``), inside the caller's transaction. The two
backends' SQL differ in three things, which a :class:`Dialect` gives: the
parameter mark, how a list of ids is one parameter, and (on a store shared by
several nodes) the row locks and the notices to the other nodes.

Every method is called inside a write of the backend (``conn`` is its
transaction) and costs nothing for jobs without edges but what its docstring
says: :meth:`Edges.resolve` is one indexed read of the edges towards the jobs
that ended (none found: done).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from semantica.errors import NoSuchJob
from semantica.models import (
    DEPENDENTS_SHOWN,
    Dependency,
    Job,
    JobError,
    JobState,
    check_transition,
)
from semantica.supervisor.store import dependencies as rules
from semantica.supervisor.store.dependencies import FAILED, MET, WAITING
from semantica.supervisor.store.records import Edge

Conn = Any  # a sqlite3.Connection or a psycopg.Connection: both .execute(sql, params)
Rows = list[Sequence[Any]]


class Dialect:
    """What differs between the backends' SQL here.

    ``mark``: the parameter mark; ``ids``: the SQL of "in this list of ids" (one
    parameter), and ``as_param`` what to pass for it; ``share``: the lock clause a
    read of jobs waited for takes (a shared store: an end of one of them waits for
    the edge's commit, and the edge sees the end); ``notify``: tell the other nodes;
    ``state``: the jobs' state column as a test beside "id in this list" writes it
    (SQLite: ``+state``, so that its planner looks the ids up instead of walking every
    QUEUED job in the state index, at each level of a chain); ``cancel_each``: the
    statement that cancels QUEUED jobs each with a message of its own (parameters: the
    time, the error kind, then ``messages_param(ids, messages)``), returning their ids.
    """

    def __init__(
        self,
        mark: str,
        ids: str,
        as_param: Callable[[Sequence[int]], Any],
        share: str = "",
        notify: Callable[[Conn, str], None] = lambda conn, kind: None,
        state: str = "state",
        cancel_each: str = "",
        messages_param: Callable[[list[int], list[str]], tuple[Any, ...]] = lambda i, m: (i, m),
    ) -> None:
        self.mark, self.ids, self.as_param, self.share, self.notify = (
            mark,
            ids,
            as_param,
            share,
            notify,
        )
        self.state = state
        self.cancel_each, self.messages_param = cancel_each, messages_param


class Edges:
    """The dependency edges of one store, in ``dialect``'s SQL."""

    def __init__(self, dialect: Dialect) -> None:
        self.d = dialect
        m, ids = dialect.mark, dialect.ids
        self._states = f"SELECT id, state FROM jobs WHERE id {ids} {dialect.share}"
        self._insert = (
            f"INSERT INTO job_deps (job_id, after_id, mode, status) VALUES ({m}, {m}, {m}, {m})"
        )
        self._towards = (
            "SELECT job_id, after_id, mode FROM job_deps "
            + f"WHERE after_id {ids} AND status = 'waiting'"
        )
        self._set_status = f"UPDATE job_deps SET status = {m} WHERE job_id = {m} AND after_id = {m}"
        self._cancel = (
            f"UPDATE jobs SET state = 'CANCELLED', finished_at = {m}, error_kind = {m}, "
            f"error_message = {m} WHERE id = {m} AND state = 'QUEUED' RETURNING id"
        )
        # Every waiting edge an end reaches: towards the jobs that ended (``bad``: one that
        # ended otherwise than DONE), then, down the chain, towards each still QUEUED job
        # that a failing ``done`` edge cancels. (UNION: a diamond is walked once.)
        queued = ("+" if dialect.state.startswith("+") else "") + "j.state"
        self._walk = (
            "WITH RECURSIVE walk(job_id, after_id, mode, bad) AS ("
            f"SELECT d.job_id, d.after_id, d.mode, CASE WHEN d.after_id {ids} THEN 1 ELSE 0 END "
            f"FROM job_deps AS d WHERE d.after_id {ids} AND d.status = 'waiting' "
            "UNION "
            "SELECT d.job_id, d.after_id, d.mode, 1 FROM walk AS w "
            "JOIN jobs AS j ON j.id = w.job_id "
            "JOIN job_deps AS d ON d.after_id = w.job_id "
            f"WHERE w.mode = 'done' AND w.bad = 1 AND {queued} = 'QUEUED' "
            "AND d.status = 'waiting') "
            "SELECT job_id, after_id, mode, bad FROM walk"
        )
        self._of = (
            "SELECT d.job_id, d.after_id, d.mode, j.state FROM job_deps AS d "
            f"JOIN jobs AS j ON j.id = d.after_id WHERE d.job_id {ids} ORDER BY d.after_id"
        )
        # CROSS JOIN: SQLite joins in the order written, from the edges below the jobs
        # given to each job by its id; left to choose, it would start from every
        # CANCELLED job in the store (its state index), at each level of a retry.
        self._failed_below = (
            "SELECT d.after_id, d.job_id FROM job_deps AS d CROSS JOIN jobs AS j "
            f"WHERE j.id = d.job_id AND d.after_id {ids} AND d.status = 'failed' "
            "AND j.state = 'CANCELLED' AND j.error_kind = 'dependency_failed'"
        )
        # The jobs of a subject a newer generation of which is queued, running or DONE:
        # what a plain retry refuses (rows.check_newest), the newer one wins.
        self._outdated = (
            f"SELECT j.id FROM jobs AS j WHERE j.id {ids} AND j.subject IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM jobs AS n WHERE n.type = j.type "
            "AND n.subject = j.subject AND n.subject IS NOT NULL "
            "AND n.generation > j.generation AND n.state IN ('QUEUED', 'RUNNING', 'DONE'))"
        )

    # ------------------------------------------------------------------ enqueue

    def add(self, conn: Conn, job: Job, edges: Sequence[tuple[int, str]], now: float) -> bool:
        """Give the new QUEUED ``job`` its edges (target, mode), each as the job waited
        for stands now, and say so on ``job`` (``waiting_on``); False if one of them
        already ended badly: the job is then CANCELLED (``dependency_failed``) at once,
        and ``job`` says that too.

        Raises:
            NoSuchJob: a job waited for does not exist (the caller's write is undone).
        """
        targets = [target for target, _ in edges]
        states = dict(conn.execute(self._states, (self.d.as_param(targets),)).fetchall())
        for target in targets:
            if target not in states:
                raise NoSuchJob(f"after: no job {target}")
        rows, unmet, failed = [], [], None
        for target, mode in edges:
            status = rules.edge_status(states[target], mode)
            if status == WAITING:
                unmet.append(target)
            elif status == FAILED and failed is None:
                failed = rules.failure(target, states[target])
            rows.append((job.id, target, mode, status))
        conn.cursor().executemany(self._insert, rows)
        m = self.d.mark
        if unmet:
            conn.execute(f"UPDATE jobs SET deps_unmet = {m} WHERE id = {m}", (len(unmet), job.id))
        if failed is not None:
            check_transition(JobState.QUEUED, JobState.CANCELLED)
            conn.execute(self._cancel, (now, *failed, job.id)).fetchall()
            job.state, job.error = JobState.CANCELLED, JobError(*failed)
            job.finished_at = datetime.fromtimestamp(now, UTC)
            return False
        job.waiting_on = sorted(unmet) or None
        return True

    def add_planned(
        self, conn: Conn, job: Job, edges: Sequence[Edge], placed: Sequence[Job], now: float
    ) -> bool:
        """:meth:`add` for the edges of a planned insert (``store/graph.py``): a local edge
        names the place of a job of the same insert, already written (``placed``)."""
        targets = [
            (placed[edge.target].id if edge.local else edge.target, edge.mode) for edge in edges
        ]
        return self.add(conn, job, targets, now)

    # ------------------------------------------------------------------ ends

    def resolve(self, conn: Conn, ended: Sequence[tuple[int, str]], now: float) -> list[int]:
        """Jobs ``ended`` (id, end state) in this transaction: resolve the edges towards
        them, and down the chain. Returns the jobs cancelled by it (``dependency_failed``),
        oldest first (a job is always newer than those it waits for).

        Costs one indexed read when no job waits for those that ended. Otherwise the
        whole cascade is one read (a recursive walk: every waiting edge towards the jobs
        that ended, and towards each waiting job that an edge failed, down the chain) and
        a few set-based writes, however deep or wide it goes: a chain of thousands ends
        within a store call's deadline, and does not hold the loop that called it.
        """
        state_of = dict(ended)
        bad = [job_id for job_id, state in state_of.items() if state in rules.BAD_ENDS]
        found = conn.execute(self._walk, (self.d.as_param(bad), self.d.as_param(list(state_of))))
        rows = found.fetchall()
        if not rows:
            return []
        cancelled = JobState.CANCELLED.value
        # What each edge becomes, and which waiting jobs are cancelled (and by which edge:
        # the lowest job waited for that failed them, so that the message is stable).
        targets: dict[tuple[str, str], set[int]] = {}
        resolved: dict[int, int] = {}
        failed: dict[int, tuple[int, str]] = {}
        for job_id, after_id, mode, towards_bad in rows:
            state = state_of.get(after_id, cancelled) if towards_bad else state_of[after_id]
            status = rules.edge_status(state, mode)
            targets.setdefault((mode, status), set()).add(after_id)
            resolved[job_id] = resolved.get(job_id, 0) + 1
            if status == FAILED and (job_id not in failed or after_id < failed[job_id][0]):
                failed[job_id] = (after_id, state)
        m, ids, as_param = self.d.mark, self.d.ids, self.d.as_param
        for (mode, status), after_ids in targets.items():
            conn.execute(
                f"UPDATE job_deps SET status = {m} WHERE after_id {ids} "
                f"AND mode = {m} AND status = 'waiting'",
                (status, as_param(sorted(after_ids)), mode),
            )
        # Each waiting job counts down by its edges resolved: one statement per count.
        by_count: dict[int, list[int]] = {}
        for job_id, count in resolved.items():
            by_count.setdefault(count, []).append(job_id)
        startable = False
        for count, job_ids in by_count.items():
            counted = conn.execute(
                f"UPDATE jobs SET deps_unmet = deps_unmet - {m} WHERE id {ids} "
                "RETURNING id, deps_unmet, state",
                (count, as_param(job_ids)),
            ).fetchall()
            if any(left == 0 and st == "QUEUED" and i not in failed for i, left, st in counted):
                startable = True
        cascaded: list[int] = []
        if failed:
            check_transition(JobState.QUEUED, JobState.CANCELLED)
            order = sorted(failed)
            messages = [rules.failure(*failed[job_id])[1] for job_id in order]
            kind = rules.failure(*failed[order[0]])[0]
            done = conn.execute(
                self.d.cancel_each, (now, kind, *self.d.messages_param(order, messages))
            ).fetchall()
            cascaded = sorted(row[0] for row in done)
        if startable:
            self.d.notify(conn, "jobs")
        if cascaded:
            self.d.notify(conn, "ends")
        return cascaded

    # ------------------------------------------------------------------ retry

    def edges_of(self, conn: Conn, job_ids: Sequence[int]) -> dict[int, list[tuple[int, str, str]]]:
        """Each job's edges: (the job waited for, mode, its state now). Both jobs of an
        edge exist: retention deletes a job's edges with it, both ways."""
        out: dict[int, list[tuple[int, str, str]]] = {}
        if not job_ids:
            return out
        for job_id, after_id, mode, state in conn.execute(self._of, (self.d.as_param(job_ids),)):
            out.setdefault(job_id, []).append((after_id, mode, state))
        return out

    def check_retry(self, conn: Conn, job_id: int) -> None:
        """Refuse a retry of ``job_id`` while a job it waits for ended badly (BadInput)."""
        rules.failed_dependency(job_id, self.edges_of(conn, [job_id]).get(job_id, ()))

    def cancelled_below(self, conn: Conn, root: int) -> list[int]:
        """The jobs a retry of ``root`` with dependents brings back (see
        :func:`~..dependencies.revivable`); nothing changed yet."""
        dependents: dict[int, list[int]] = {}
        edges: dict[int, list[tuple[int, str, str]]] = {}
        frontier, seen = [root], {root}
        while frontier:
            found = conn.execute(self._failed_below, (self.d.as_param(frontier),)).fetchall()
            new = []
            for after_id, job_id in found:
                dependents.setdefault(after_id, []).append(job_id)
                if job_id not in seen:
                    seen.add(job_id)
                    new.append(job_id)
            edges.update(self.edges_of(conn, new))
            frontier = new
        outdated: set[int] = set()
        if edges:
            rows = conn.execute(self._outdated, (self.d.as_param(list(edges)),)).fetchall()
            outdated = {job_id for (job_id,) in rows}
        return rules.revivable(root, dependents, edges, outdated)

    def revive(self, conn: Conn, job_ids: Sequence[int], now: float) -> None:
        """The CANCELLED jobs ``job_ids`` (from :meth:`cancelled_below`) go back to the
        queue as new (their error of the cancel cleared), and the edges of the job
        retried (first of ``job_ids``, already QUEUED) and theirs are counted again
        against what the jobs waited for are now."""
        m = self.d.mark
        check_transition(JobState.CANCELLED, JobState.QUEUED)
        conn.cursor().executemany(
            "UPDATE jobs SET state = 'QUEUED', attempts = 0, "
            f"run_after = {m}, finished_at = NULL, worker_pid = NULL, error_kind = NULL, "
            f"error_message = NULL WHERE id = {m} AND state = 'CANCELLED'",
            [(now, job_id) for job_id in job_ids[1:]],
        )
        self.recount(conn, job_ids)

    def recount(self, conn: Conn, job_ids: Sequence[int]) -> None:
        """Set the status of every edge of ``job_ids`` from the jobs waited for as they
        are now, and each job's count of those still waiting."""
        m = self.d.mark
        edges = self.edges_of(conn, job_ids)
        if not edges:
            return
        statuses, counts = [], []
        for job_id, items in edges.items():
            unmet = 0
            for after_id, mode, state in items:
                status = rules.edge_status(state, mode)
                unmet += status == WAITING
                statuses.append((status, job_id, after_id))
            counts.append((unmet, job_id))
        conn.cursor().executemany(self._set_status, statuses)
        conn.cursor().executemany(f"UPDATE jobs SET deps_unmet = {m} WHERE id = {m}", counts)

    # ------------------------------------------------------------------ show

    def describe(self, conn: Conn, job: Job) -> Job:
        """``job`` with its dependencies and its dependents (the first DEPENDENTS_SHOWN);
        each None when there is none, so a job without edges reads as any list does."""
        m = self.d.mark
        dependencies = [
            Dependency(id=after_id, mode=mode, state=JobState(state))
            for _, after_id, mode, state in conn.execute(self._of, (self.d.as_param([job.id]),))
        ]
        dependents = [
            job_id
            for (job_id,) in conn.execute(
                f"SELECT job_id FROM job_deps WHERE after_id = {m} ORDER BY job_id LIMIT {m}",
                (job.id, DEPENDENTS_SHOWN),
            )
        ]
        job.dependencies = dependencies or None
        job.dependents = dependents or None
        job.dependents_count = len(dependents)
        if job.dependents_count == DEPENDENTS_SHOWN:
            (job.dependents_count,) = conn.execute(
                f"SELECT count(*) FROM job_deps WHERE after_id = {m}", (job.id,)
            ).fetchone()
        return job

    def waiting_count(self, conn: Conn) -> int:
        """How many QUEUED jobs wait for dependencies (an index of those alone)."""
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE state = 'QUEUED' AND deps_unmet > 0"
        ).fetchone()
        return int(row[0]) if row else 0


__all__ = ["FAILED", "MET", "WAITING", "Dialect", "Edges"]
