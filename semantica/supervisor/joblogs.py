"""Job logs: one text file per job under ``$SEMANTICA_HOME/logs``, capped in size.

Only the supervisor writes them (workers send lines over their channel), so a
log never interleaves two attempts' partial lines, and a future ``tail`` can
be fed from the same place that writes.

When an attempt writes to a log that already holds output (a retry, a run
again after an interruption or ``semctl retry``), or is not the first attempt,
its first lines follow a separator, ``--- attempt N, <local time> ---``, so
``semctl logs`` shows where each run began.

The cap keeps the *end* of a log, which is where a build prints its error:
when the current file would pass half the cap it becomes ``ID.log.1``
(replacing an older one) and a new ``ID.log`` starts, so a job's log never
takes more than the cap on disk.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from pathlib import Path
from typing import BinaryIO, Protocol

import structlog

log = structlog.get_logger("semantica.joblogs")


def separator(attempt: int) -> str:
    """The line before an attempt's output: its number and the local time."""
    return f"--- attempt {attempt}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')} ---"


class Logs(Protocol):
    """Where job logs are kept: files here (:class:`JobLogs`), or the store's log book
    when several nodes share the store (shared_logs.py)."""

    #: Whether the logs are shared by every node (followers then read them again).
    shared: bool

    def append(self, job_id: int, lines: list[str], attempt: int = 1) -> list[str]: ...
    def close(self, job_id: int) -> None: ...
    def tail(self, job_id: int, lines: int | None = None) -> list[str]: ...
    def remove(self, job_id: int) -> None: ...
    def remove_files(self, job_id: int) -> None: ...
    def job_ids_on_disk(self) -> set[int]: ...
    def close_all(self) -> None: ...


class JobLogs:
    """The log files of every job.

    Args:
        directory: where the files live (created 0700 if missing).
        cap_bytes: the most one job's log may take on disk.
    """

    shared = False

    def __init__(self, directory: Path, cap_bytes: int) -> None:
        self.directory = directory
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._half_cap = max(cap_bytes // 2, 512)
        self._open: dict[int, BinaryIO] = {}
        self._failed: set[int] = set()  # jobs whose log could not be written (warned once)

    def path(self, job_id: int) -> Path:
        return self.directory / f"{job_id}.log"

    def append(self, job_id: int, lines: list[str], attempt: int = 1) -> list[str]:
        """Add lines of ``attempt`` (newlines inside a line are kept as they are) and flush.

        Returns the lines as written: with the attempt's separator first, if
        these are the attempt's first lines and a separator is due (see the
        module docstring), so followers see what the file holds.

        A write that fails (disk full) drops the lines: a job's log is worth
        less than the job, which goes on.
        """
        try:
            return self._append(job_id, lines, attempt)
        except OSError as exc:
            self.close(job_id)
            if job_id not in self._failed:
                self._failed.add(job_id)
                log.warning(
                    "cannot write a job log; dropping its lines", job_id=job_id, error=str(exc)
                )
            return lines

    def _append(self, job_id: int, lines: list[str], attempt: int) -> list[str]:
        handle = self._open.get(job_id)
        if handle is None:
            # The attempt's first lines (the handle is closed when an attempt ends).
            handle = open(self.path(job_id), "ab")  # noqa: SIM115  # kept open across appends
            self._open[job_id] = handle
            if attempt > 1 or handle.tell() > 0:
                lines = [separator(attempt), *lines]
        data = "".join(line + "\n" for line in lines).encode("utf-8", "replace")
        if handle.tell() + len(data) > self._half_cap and handle.tell() > 0:
            handle.close()
            os.replace(self.path(job_id), self.directory / f"{job_id}.log.1")
            handle = open(self.path(job_id), "ab")  # noqa: SIM115
            self._open[job_id] = handle
        if len(data) > self._half_cap:
            data = data[-self._half_cap :]
        handle.write(data)
        handle.flush()
        return lines

    def close(self, job_id: int) -> None:
        """The job's attempt ended: release the file handle."""
        handle = self._open.pop(job_id, None)
        if handle is not None:
            with contextlib.suppress(OSError):  # a failed flush of the last lines
                handle.close()

    def tail(self, job_id: int, lines: int | None = None) -> list[str]:
        """The last ``lines`` lines (all when None), oldest first; [] when there is no log."""
        last: deque[str] = deque(maxlen=lines) if lines is not None else deque()
        for path in (self.directory / f"{job_id}.log.1", self.path(job_id)):
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
                for raw in handle:
                    last.append(raw.decode("utf-8", "replace").rstrip("\n"))
        return list(last)

    def remove(self, job_id: int) -> None:
        """Delete a job's log files."""
        self.close(job_id)
        self.remove_files(job_id)

    def remove_files(self, job_id: int) -> None:
        """Delete a job's log files; touches only the file system (safe in a thread)."""
        for path in (self.path(job_id), self.directory / f"{job_id}.log.1"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def job_ids_on_disk(self) -> set[int]:
        """The job ids that have a log file (safe in a thread)."""
        ids = set()
        for path in self.directory.iterdir():
            stem = path.name.split(".", 1)[0]
            # isdigit() alone takes a superscript two, which int() refuses.
            if stem.isascii() and stem.isdigit() and path.name.startswith(f"{stem}.log"):
                ids.add(int(stem))
        return ids

    def close_all(self) -> None:
        for job_id in list(self._open):
            self.close(job_id)
