"""Reading the ledger that chaos handlers append to: ``job attempt pid start|end`` per line."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    job: int
    attempt: int
    pid: int
    what: str  # "start" or "end"


class Ledger:
    """The ledger file of one scenario; read it again whenever the test needs a fresh view."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: list[Entry] = []
        self.starts: dict[int, list[Entry]] = defaultdict(list)  # job -> its start lines
        self.ends: set[tuple[int, int]] = set()  # (job, attempt) that reached their end
        self.ends_by_pid: set[tuple[int, int]] = set()  # (job, pid) that reached their end

    def read(self) -> Ledger:
        """Parse the whole file (again); returns self."""
        self.entries = []
        self.starts = defaultdict(list)
        self.ends = set()
        self.ends_by_pid = set()
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = ""
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if len(fields) != 4 or fields[3] not in ("start", "end"):
                raise AssertionError(f"{self.path}:{number}: malformed ledger line {line!r}")
            entry = Entry(int(fields[0]), int(fields[1]), int(fields[2]), fields[3])
            self.entries.append(entry)
            if entry.what == "start":
                self.starts[entry.job].append(entry)
            else:
                self.ends.add((entry.job, entry.attempt))
                self.ends_by_pid.add((entry.job, entry.pid))
        return self

    def started(self, job: int) -> list[Entry]:
        return self.starts.get(job, [])

    def ended(self, job: int, attempt: int) -> bool:
        return (job, attempt) in self.ends

    def wait_for(self, predicate: object, timeout: float = 30.0, what: str = "") -> Ledger:
        """Re-read until ``predicate(self)`` holds; fail after ``timeout`` seconds."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while True:
            self.read()
            if predicate(self):
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"ledger: timed out waiting for {what or predicate}")
            time.sleep(0.005)
