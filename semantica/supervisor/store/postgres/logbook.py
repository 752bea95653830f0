"""Job logs in PostgreSQL: the log book every node reads (see store/sharing.py).

Each line is a row of ``job_logs`` (migration 007), numbered by an identity
column in the order lines were added, and deleted with its job (``ON DELETE
CASCADE``). The supervisor of the node that runs a job writes its lines (on its
own connection, so they join its group commit); any node reads them, and a
follower reads the lines after the last number it saw.
"""

from __future__ import annotations

from semantica.supervisor.store.postgres.connection import PGConnection, reads
from semantica.supervisor.store.postgres.rows import clean


class PGLogBook(PGConnection):
    """The :class:`~semantica.supervisor.store.sharing.LogBook` of a PostgreSQL store."""

    def log_book(self) -> PGLogBook:
        """This store: its job logs are shared by every node."""
        return self

    def append_log(self, job_id: int, lines: list[str]) -> None:
        """Add ``lines`` to the end of the job's log, in order."""
        if not lines:
            return
        with self.transaction(tell=True) as conn:
            conn.execute(
                "INSERT INTO job_logs (job_id, line) SELECT %s, line "
                "FROM unnest(%s::text[]) WITH ORDINALITY AS l(line, n) ORDER BY n",
                (job_id, [clean(line) for line in lines]),
            )

    @reads
    def read_log(
        self, job_id: int, last: int | None = None, after: int = 0
    ) -> tuple[list[str], int]:
        """The job's lines numbered above ``after``, the ``last`` of them if given, oldest
        first; and the number of the newest line read (``after`` if none)."""
        conn = self._live()
        if last is None:
            rows = conn.execute(
                "SELECT seq, line FROM job_logs WHERE job_id = %s AND seq > %s ORDER BY seq",
                (job_id, after),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT seq, line FROM job_logs WHERE job_id = %s AND seq > %s "
                "ORDER BY seq DESC LIMIT %s",
                (job_id, after, last),
            ).fetchall()
            rows.reverse()
        return [line for _, line in rows], (rows[-1][0] if rows else after)

    @reads
    def has_log(self, job_id: int) -> bool:
        """Whether the job's log holds any line."""
        row = (
            self._live()
            .execute("SELECT EXISTS (SELECT 1 FROM job_logs WHERE job_id = %s)", (job_id,))
            .fetchone()
        )
        return bool(row and row[0])

    def trim_log(self, job_id: int, keep_bytes: int) -> None:
        """Drop the job's oldest lines until the rest take at most ``keep_bytes`` (the
        newest line stays, however long)."""
        with self.transaction(tell=True) as conn:
            conn.execute(
                "DELETE FROM job_logs WHERE job_id = %s AND seq < coalesce(("
                " SELECT min(seq) FROM (SELECT seq, sum(octet_length(line) + 1) "
                "  OVER (ORDER BY seq DESC) AS tail FROM job_logs WHERE job_id = %s) AS t "
                " WHERE tail <= %s), (SELECT max(seq) FROM job_logs WHERE job_id = %s))",
                (job_id, job_id, keep_bytes, job_id),
            )
