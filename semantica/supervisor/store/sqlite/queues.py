"""Queues on SQLite: their settings and counts, and the facts the start rules read.

A queue is a row of ``queues`` once a job or a setting names it; a queue
without a row has the default settings (not paused, no limit). Maintenance
forgets queues with no job and no setting (upkeep.py).
"""

from __future__ import annotations

from semantica.models import JobState, QueueInfo
from semantica.supervisor.store.contract import QueueInfos
from semantica.supervisor.store.rows import ALL_STATES_SQL
from semantica.supervisor.store.sqlite.connection import SQLiteConnection, reads
from semantica.supervisor.store.start_rules import Blockers


class SQLiteQueues(SQLiteConnection):
    """Queue settings and counts, and what holds queued jobs back."""

    @reads
    def queues(self, finished: bool = True) -> QueueInfos:
        """Every queue that has a setting or a job, by name, with counts by state
        (``finished`` False: of QUEUED and RUNNING jobs alone; see the contract)."""
        found: dict[str, QueueInfo] = {}
        for row in self.db.query("SELECT name, paused, max_running FROM queues"):
            found[row["name"]] = QueueInfo(
                name=row["name"], paused=bool(row["paused"]), limit=row["max_running"]
            )
        # In jobs_state's order (state, queue): read as it comes, no sort.
        which = "" if finished else "WHERE state IN ('QUEUED', 'RUNNING') "
        for row in self.db.query(
            f"SELECT queue, state, count(*) AS n FROM jobs INDEXED BY jobs_state {which}"
            "GROUP BY state, queue"
        ):
            info = found.setdefault(row["queue"], QueueInfo(name=row["queue"]))
            info.counts[row["state"]] = row["n"]
        counted = JobState if finished else (JobState.QUEUED, JobState.RUNNING)
        for info in found.values():
            info.counts = {state.value: info.counts.get(state.value, 0) for state in counted}
        return [found[name] for name in sorted(found)]

    def set_queue(
        self, name: str, *, paused: bool | None = None, limit: int | None = None
    ) -> QueueInfo:
        """Create the queue if new and change its settings; return it (name and
        limit already checked: see ``records.check_queue_setting``)."""
        with self.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO queues (name) VALUES (?)", (name,))
            if paused is not None:
                conn.execute("UPDATE queues SET paused = ? WHERE name = ?", (int(paused), name))
            if limit is not None:
                conn.execute("UPDATE queues SET max_running = ? WHERE name = ?", (limit, name))
        return self._queue(name)

    @reads
    def _queue(self, name: str) -> QueueInfo:
        """One queue that has a row, with its counts (read from jobs_state: six seeks)."""
        paused, limit = self._conn.execute(
            "SELECT paused, max_running FROM queues WHERE name = ?", (name,)
        ).fetchone()
        info = QueueInfo(name=name, paused=bool(paused), limit=limit)
        info.counts = {state.value: 0 for state in JobState}
        for state, n in self._conn.execute(
            "SELECT state, count(*) FROM jobs INDEXED BY jobs_state "
            f"WHERE state IN {ALL_STATES_SQL} AND queue = ? GROUP BY state",
            (name,),
        ):
            info.counts[state] = n
        return info

    @reads
    def queue_known(self, name: str) -> bool:
        """Whether a job or a setting ever named the queue (and it was not forgotten)."""
        row = self._conn.execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone()
        return row is not None

    @reads
    def some_queues(self, most: int = 10) -> str:
        """The first queue names, for a message: ``a, b, c`` or ``a, b, ... (12 in all)``."""
        names = [
            row[0]
            for row in self._conn.execute(
                "SELECT name FROM queues ORDER BY name LIMIT ?", (most + 1,)
            )
        ]
        if len(names) <= most:
            return ", ".join(names) or "none yet"
        total = self._conn.execute("SELECT count(*) FROM queues").fetchone()[0]
        return f"{', '.join(names[:most])}, ... ({total} in all)"

    @reads
    def blockers(self) -> Blockers:
        """What stops queued jobs right now, apart from time and conditions."""
        blockers = Blockers()
        for row in self.db.query(
            "SELECT name, paused, max_running FROM queues WHERE paused = 1 OR max_running > 0"
        ):
            if row["paused"]:
                blockers.paused.add(row["name"])
            if row["max_running"]:
                blockers.limits[row["name"]] = row["max_running"]
        for row in self.db.query("SELECT queue, type, subject FROM jobs WHERE state = 'RUNNING'"):
            queue = row["queue"]
            blockers.running_per_queue[queue] = blockers.running_per_queue.get(queue, 0) + 1
            if row["subject"] is not None:
                blockers.busy_subjects.add((row["type"], row["subject"]))
        return blockers

    @reads
    def conditions_wanted(self) -> tuple[bool, bool]:
        """Whether any QUEUED job requires charging, and whether any requires an idle CPU."""
        row = self._conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_conditions "
            "               WHERE state = 'QUEUED' AND require_charging = 1), "
            "       EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_conditions "
            "               WHERE state = 'QUEUED' AND require_idle = 1)"
        ).fetchone()
        return bool(row[0]), bool(row[1])

    @reads
    def next_run_after(self) -> float | None:
        """The earliest future ``run_after`` of a queued job (when to look again), or None."""
        row = self._conn.execute(
            "SELECT min(run_after) FROM jobs INDEXED BY jobs_due "
            "WHERE state = 'QUEUED' AND run_after > ?",
            (self.clock.time(),),
        ).fetchone()
        return None if row[0] is None else float(row[0])
