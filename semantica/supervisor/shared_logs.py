"""Job logs kept in a shared store, so that every node reads every job's log.

On PostgreSQL several supervisors share the jobs, and a job's log must be
readable (``logs``) and followable (``tail``) from any of them, whichever ran
the job. :class:`StoreLogs` keeps each line in the store's log book (see
:class:`~semantica.supervisor.store.LogBook`) instead of a file, with the
same promises as the files of joblogs.py: an attempt's first lines follow a
separator when the log already holds output or the attempt is not the first,
and a log keeps its *end* within the cap (once a job's lines pass the cap, the
oldest go, leaving about half of it).

Lines join the store's open batch like any write, so they are durable with the
next group commit; a node that dies loses at most the lines of that batch.
A write that fails drops the lines (a job's log is worth less than the job,
which goes on), warned once per job.

Following: the log book numbers lines, so a follower reads the lines after
the last it saw (:meth:`after`), whether the job runs here or on another node.
"""

from __future__ import annotations

import structlog

from semantica.errors import StoreError
from semantica.supervisor.joblogs import separator
from semantica.supervisor.store import LogBook

log = structlog.get_logger("semantica.joblogs")


class StoreLogs:
    """The logs of every job, in the store's log book.

    Args:
        book: the store's log book.
        cap_bytes: the most one job's log keeps (its end).
    """

    shared = True

    def __init__(self, book: LogBook, cap_bytes: int) -> None:
        self.book = book
        self.cap = cap_bytes
        self._sizes: dict[int, int] = {}  # bytes written by this node's open attempts
        self._failed: set[int] = set()

    def append(self, job_id: int, lines: list[str], attempt: int = 1) -> list[str]:
        """Add lines of ``attempt``; returns them as kept (with a separator first when
        due: see the module docstring)."""
        try:
            if job_id not in self._sizes:  # the attempt's first lines here
                if attempt > 1 or self.book.has_log(job_id):
                    lines = [separator(attempt), *lines]
                self._sizes[job_id] = 0
            self.book.append_log(job_id, lines)
            self._sizes[job_id] += sum(len(line) + 1 for line in lines)
            if self._sizes[job_id] > self.cap:
                self.book.trim_log(job_id, self.cap // 2)
                self._sizes[job_id] = self.cap // 2
        except StoreError as exc:
            if job_id not in self._failed:
                self._failed.add(job_id)
                log.warning(
                    "cannot write a job log; dropping its lines", job_id=job_id, error=str(exc)
                )
        return lines

    def close(self, job_id: int) -> None:
        """The job's attempt ended here."""
        self._sizes.pop(job_id, None)

    def tail(self, job_id: int, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines (all when None), oldest first; [] when there is none."""
        return self.book.read_log(job_id, last=lines)[0]

    def after(self, job_id: int, seen: int) -> tuple[list[str], int]:
        """The lines after the one numbered ``seen`` (0: from the start), and the number
        of the newest line (``seen`` if there is none)."""
        return self.book.read_log(job_id, after=seen)

    def remove(self, job_id: int) -> None:
        """(Lines go with their job, in the store.)"""
        self.close(job_id)

    def remove_files(self, job_id: int) -> None:
        """No files: the lines go with their job."""

    def job_ids_on_disk(self) -> set[int]:
        """No files: nothing to clean up on disk."""
        return set()

    def close_all(self) -> None:
        self._sizes.clear()
