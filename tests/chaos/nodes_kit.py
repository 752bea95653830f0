"""The pieces of the node scenarios (scenarios_nodes.py): three nodes on one PostgreSQL
database, their load, and the ticks that show when copies of a job really ran.

* :func:`start_node`: a real ``semanticad --store ... --node-name ... --node-timeout ...``
  running ``chaos_handlers`` (a ChaosDaemon of this suite, with a home of its own).
* :class:`Load`: a client enqueueing short ledger jobs one at a time through one node,
  keeping what was acknowledged, and every error with how long its call took (a node
  whose store is down must answer ``store_unavailable`` at once, never hang).
* :class:`Ticks`: the ``ticks`` file ``CHAOS_TICKS`` jobs append to. A copy's ticks are
  cut into *runs* wherever it made none for :data:`GAP_S` (a frozen copy makes none),
  and :meth:`Ticks.overlap` is the longest time two copies of one job both ran: the
  intersection of their runs. (A copy's first-to-last span would count the time it
  was frozen as running.)
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from chaos_scenarios import job_spec
from harness import Daemon

from semantica import Client
from semantica.errors import SemanticaError

MakeDaemon = Callable[..., Daemon]

#: A copy that made no tick for this long was not running meanwhile (it ticks every 20 ms).
GAP_S = 0.5

Run = tuple[float, float]  # first and last tick of a stretch a copy ran without a pause


def start_node(
    make_daemon: MakeDaemon, where: Path, store: str, name: str, timeout: float
) -> Daemon:
    """A node of ``store`` with 2 workers and node timeout ``timeout``, its home in
    ``where / name`` (a directory of its own: the harness puts the supervisor's output
    beside its home)."""
    (where / name).mkdir()
    return make_daemon(
        "--store",
        store,
        "--node-name",
        name,
        "--node-timeout",
        str(timeout),
        workers=2,
        home=where / name / "home",
    )


def tree_pids(node: Daemon) -> set[int]:
    return {p.pid for p in node.process_tree()}


def signal_tree(procs: list[psutil.Process], what: Callable[[psutil.Process], None]) -> None:
    """Do ``what`` (suspend, resume, kill) to each of ``procs``, gone ones skipped."""
    for proc in procs:
        try:
            what(proc)
        except psutil.NoSuchProcess:
            pass


def ticks_job(ledger: Path, ticks: Path, seconds: float = 120) -> dict[str, Any]:
    """A CHAOS_TICKS job that ticks ``seconds`` at most: until the scenario releases it
    (:meth:`Ticks.release`), every copy that runs then."""
    payload = {"ledger": str(ledger), "ticks": str(ticks), "seconds": seconds}
    return {
        "type": "CHAOS_TICKS",
        "payload": {**payload, "release": str(ticks.with_name("release"))},
        "max_attempts": 5,
        "backoff": 0,
    }


class Load(threading.Thread):
    """Enqueue one short ledger job per request through ``node`` until :meth:`stop`.

    ``acked``: ids whose enqueue returned. ``errors``: (code, seconds the call took,
    when it failed) for each refused enqueue; ``served``: when each ack came back.
    """

    def __init__(self, node: Daemon, ledger: Path, seed: int, pace: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.node, self.ledger, self.pace = node, ledger, pace
        self.rng = random.Random(seed)
        self.acked: list[int] = []
        self.served: list[float] = []
        self.errors: list[tuple[str, float, float]] = []
        self.failure: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        client = Client(home=self.node.home)
        try:
            while not self._halt.is_set():
                spec = job_spec(self.rng, self.ledger, (0.01, 0.1))
                began = time.monotonic()
                try:
                    job = client.enqueue(spec.pop("type"), spec.pop("payload"), **spec)
                except SemanticaError as exc:
                    now = time.monotonic()
                    self.errors.append((exc.code, now - began, now))
                    client.close()  # (a fresh connection for the next try)
                    client = Client(home=self.node.home)
                else:
                    self.acked.append(job.id)
                    self.served.append(time.monotonic())
                self._halt.wait(self.pace)
        except BaseException as exc:  # noqa: BLE001  # reported by the test
            self.failure = exc
        finally:
            client.close()

    def stop(self) -> list[int]:
        """Stop enqueueing; the acknowledged ids. Fails if the thread failed or hung."""
        self._halt.set()
        self.join(30)
        assert not self.is_alive(), "an enqueue through a node hung"
        assert self.failure is None, f"the load failed: {self.failure!r}"
        return self.acked


class Ticks:
    """The ticks file of a scenario; :meth:`read` it again for a fresh view."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.copies: dict[int, dict[int, list[float]]] = {}  # job -> pid -> tick times

    def read(self) -> Ticks:
        copies: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            job, _attempt, pid, at = line.split()
            copies[int(job)][int(pid)].append(float(at))
        self.copies = {job: dict(pids) for job, pids in copies.items()}
        return self

    def release(self) -> None:
        """End every CHAOS_TICKS job of the scenario (the copies running and any to come)."""
        self.path.with_name("release").touch()

    def pids(self, job: int) -> set[int]:
        return set(self.copies.get(job, {}))

    def runs(self, job: int, pid: int) -> list[Run]:
        """The stretches copy ``pid`` of ``job`` ran without a pause of GAP_S."""
        runs: list[Run] = []
        for at in sorted(self.copies[job][pid]):
            if runs and at - runs[-1][1] <= GAP_S:
                runs[-1] = (runs[-1][0], at)
            else:
                runs.append((at, at))
        return runs

    def first_tick(self, job: int, pid: int) -> float:
        return min(self.copies[job][pid])

    def last_tick(self, job: int, pid: int) -> float:
        return max(self.copies[job][pid])

    def overlap(self) -> float:
        """The longest time two copies of one job both ran (0.0: never), in seconds."""
        worst = 0.0
        for job, pids in self.copies.items():
            runs = [(pid, run) for pid in pids for run in self.runs(job, pid)]
            for i, (pid_a, (a0, a1)) in enumerate(runs):
                for pid_b, (b0, b1) in runs[i + 1 :]:
                    if pid_a != pid_b and min(a1, b1) >= max(a0, b0):
                        worst = max(worst, min(a1, b1) - max(a0, b0))
        return worst

    def wait_for(self, predicate: Callable[[Ticks], bool], timeout: float, what: str) -> Ticks:
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.read()):
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"ticks: timed out waiting for {what}")
            time.sleep(0.005)
