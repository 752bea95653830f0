"""Queues on PostgreSQL: their settings and counts, and the facts the start rules read.

As SQLite's (sqlite/queues.py): a queue is a row of ``queues`` once a job or a
setting names it; a queue without a row has the default settings. A change of
settings tells the other nodes ("queues", changes.py).
"""

from __future__ import annotations

from semantica.models import JobState, QueueInfo
from semantica.supervisor.store.contract import QueueInfos
from semantica.supervisor.store.postgres.changes import notify
from semantica.supervisor.store.postgres.connection import PGConnection, reads
from semantica.supervisor.store.start_rules import Blockers


class PGQueues(PGConnection):
    """Queue settings and counts, and what holds queued jobs back."""

    @reads
    def queues(self, finished: bool = True) -> QueueInfos:
        """Every queue that has a setting or a job, by name, with counts by state
        (``finished`` False: of QUEUED and RUNNING jobs alone; see the contract)."""
        conn = self._live()
        found: dict[str, QueueInfo] = {}
        for name, paused, limit in conn.execute("SELECT name, paused, max_running FROM queues"):
            found[name] = QueueInfo(name=name, paused=bool(paused), limit=limit)
        which = "" if finished else "WHERE state IN ('QUEUED', 'RUNNING') "
        for queue, state, n in conn.execute(
            f"SELECT queue, state, count(*) FROM jobs {which}GROUP BY state, queue"
        ):
            info = found.setdefault(queue, QueueInfo(name=queue))
            info.counts[state] = n
        counted = JobState if finished else (JobState.QUEUED, JobState.RUNNING)
        for info in found.values():
            info.counts = {state.value: info.counts.get(state.value, 0) for state in counted}
        return [found[name] for name in sorted(found)]

    def set_queue(
        self, name: str, *, paused: bool | None = None, limit: int | None = None
    ) -> QueueInfo:
        """Create the queue if new and change its settings; return it (name and limit
        already checked)."""
        with self.transaction() as conn:
            conn.execute("INSERT INTO queues (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
            if paused is not None or limit is not None:
                conn.execute(
                    "UPDATE queues SET paused = coalesce(%s, paused), "
                    "max_running = coalesce(%s, max_running) WHERE name = %s",
                    (paused, limit, name),
                )
                notify(conn, "queues")
        return self._queue(name)

    @reads
    def _queue(self, name: str) -> QueueInfo:
        """One queue that has a row, with its counts."""
        conn = self._live()
        row = conn.execute(
            "SELECT paused, max_running FROM queues WHERE name = %s", (name,)
        ).fetchone()
        paused, limit = row if row else (False, 0)
        info = QueueInfo(name=name, paused=bool(paused), limit=limit)
        info.counts = {state.value: 0 for state in JobState}
        for state, n in conn.execute(
            "SELECT state, count(*) FROM jobs WHERE queue = %s GROUP BY state", (name,)
        ):
            info.counts[state] = n
        return info

    @reads
    def queue_known(self, name: str) -> bool:
        """Whether a job or a setting ever named the queue (and it was not forgotten)."""
        row = self._live().execute("SELECT 1 FROM queues WHERE name = %s", (name,)).fetchone()
        return row is not None

    @reads
    def some_queues(self, most: int = 10) -> str:
        """The first queue names, for a message: ``a, b, c`` or ``a, b, ... (12 in all)``."""
        conn = self._live()
        names = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM queues ORDER BY name LIMIT %s", (most + 1,)
            )
        ]
        if len(names) <= most:
            return ", ".join(names) or "none yet"
        row = conn.execute("SELECT count(*) FROM queues").fetchone()
        return f"{', '.join(names[:most])}, ... ({row[0] if row else 0} in all)"

    @reads
    def blockers(self) -> Blockers:
        """What stops queued jobs right now (on every node), apart from time and conditions."""
        conn = self._live()
        blockers = Blockers()
        for name, paused, limit in conn.execute(
            "SELECT name, paused, max_running FROM queues WHERE paused OR max_running > 0"
        ):
            if paused:
                blockers.paused.add(name)
            if limit:
                blockers.limits[name] = limit
        for queue, type_, subject in conn.execute(
            "SELECT queue, type, subject FROM jobs WHERE state = 'RUNNING'"
        ):
            blockers.running_per_queue[queue] = blockers.running_per_queue.get(queue, 0) + 1
            if subject is not None:
                blockers.busy_subjects.add((type_, subject))
        return blockers

    @reads
    def conditions_wanted(self) -> tuple[bool, bool]:
        """Whether any QUEUED job requires charging, and whether any requires an idle CPU."""
        row = (
            self._live()
            .execute(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'QUEUED' AND require_charging), "
                "       EXISTS (SELECT 1 FROM jobs WHERE state = 'QUEUED' AND require_idle)"
            )
            .fetchone()
        )
        return (bool(row[0]), bool(row[1])) if row else (False, False)

    @reads
    def next_run_after(self) -> float | None:
        """The earliest future ``run_after`` of a queued job (when to look again), or None."""
        row = (
            self._live()
            .execute(
                "SELECT min(run_after) FROM jobs WHERE state = 'QUEUED' AND run_after > %s",
                (self.clock.time(),),
            )
            .fetchone()
        )
        return None if not row or row[0] is None else float(row[0])
