"""Chaos: what jobs start never outlives them, while workers are killed and jobs stopped.

Handlers (``CHAOS_SPAWN``, ``CHAOS_ASYNC_SPAWN`` in ``chaos_handlers``) and exec
commands start processes every way they can: a shell's background job, a child
in a session of its own, a double-forked daemon, and a fork that never execs,
which holds its worker's channel to the supervisor. Meanwhile busy workers are
SIGKILLed, running jobs are cancelled, some jobs time out and some kill their
own worker. Every process of the scenario carries a marker in its environment
(``CHAOS_MARK``, set for the supervisor and inherited by all below it), so a
scan of the machine finds any left behind, wherever it was re-parented.

Invariants, besides those of :mod:`invariants`: no job is lost or stuck
RUNNING (each ends DONE, FAILED or CANCELLED, in time); once they have all
ended, no marked process runs but the supervisor and its workers; a SIGTERM
with stubborn jobs running (they ignore their stop, hold the channel, ignore
SIGTERM) exits 0 within the drain timeout + the cancel grace + 2 s; then no
marked process runs at all.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
from chaos_handlers import SPAWN_WAYS
from chaos_ledger import Ledger
from chaos_scenarios import MakeDaemon, busy_worker, events
from harness import Daemon
from invariants import check_after, check_live, fetch, wait_all

from semantica import Client
from semantica.models import TERMINAL_STATES, JobState

#: What a test allows past drain timeout + cancel grace for semanticad to exit.
EXIT_SLACK_S = 2.0


def marked(mark: str) -> list[psutil.Process]:
    """Every live process (not a zombie) whose environment holds ``CHAOS_MARK=mark``."""
    needle = f"CHAOS_MARK={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            proc = psutil.Process(int(name))
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue  # gone meanwhile, or not ours to read
    return found


def strays(daemon: Daemon, client: Client, mark: str, settle: float = 5.0) -> list[psutil.Process]:
    """Marked processes that are neither the supervisor nor one of its workers.

    A worker just spawned is listed by ``status`` a moment after it exists (once it
    said hello), so what looks stray is looked at again for up to ``settle`` s."""
    assert daemon.proc is not None
    deadline = time.monotonic() + settle
    while True:
        ours = {daemon.proc.pid, *(w.pid for w in client.status().workers)}
        left = [p for p in marked(mark) if p.pid not in ours]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _spec(rng: random.Random, ledger_path: Path) -> dict[str, Any]:
    """A random job that starts processes: a plain or async handler, or a command."""
    kind = rng.choice(("CHAOS_SPAWN", "CHAOS_ASYNC_SPAWN", "exec"))
    seconds = round(rng.uniform(0.05, 0.5), 3)
    ignore_term = rng.random() < 0.3
    options: dict[str, Any] = {"max_attempts": 2, "backoff": 0}
    if rng.random() < 0.2:
        options["timeout"] = 0.1  # most of them time out
    if kind == "exec":
        leaf = ("trap '' TERM; " if ignore_term else "") + "exec sleep 300"
        script = f'sh -c "{leaf}" & setsid sh -c "{leaf}" & sleep {seconds}'
        return {"type": "exec", "payload": {"argv": ["sh", "-c", script]}, **options}
    payload = {
        "ledger": str(ledger_path),
        "spawn": rng.sample(SPAWN_WAYS, rng.randint(1, len(SPAWN_WAYS))),
        "ignore_term": ignore_term,
        "seconds": seconds,
        "exit": rng.random() < 0.05,  # kills its own worker
    }
    return {"type": kind, "payload": payload, **options}


def containment(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    jobs: int,
    workers: int,
    kills: int,
    cancels: int,
    every: float,
    grace: float = 0.3,
    drain: float = 1.0,
    seed: int = 7,
) -> str:
    """``jobs`` jobs that start processes, while a busy worker is SIGKILLed or a running job
    cancelled every ``every`` s (``kills`` and ``cancels`` times); then SIGTERM with one
    stubborn job per worker. See the module docstring for what is checked."""
    mark = uuid.uuid4().hex
    try:
        return _containment(
            make_daemon, ledger_path, mark, jobs, workers, kills, cancels, every, grace, drain, seed
        )
    finally:
        for proc in marked(mark):  # a failed run must not leave its processes behind
            proc.kill()


def _containment(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    mark: str,
    jobs: int,
    workers: int,
    kills: int,
    cancels: int,
    every: float,
    grace: float,
    drain: float,
    seed: int,
) -> str:
    rng = random.Random(seed)
    began = time.monotonic()
    d = make_daemon(
        "--cancel-grace",
        str(grace),
        "--drain-timeout",
        str(drain),
        workers=workers,
        CHAOS_MARK=mark,
    )
    ledger = Ledger(ledger_path)
    specs = [_spec(rng, ledger_path) for _ in range(jobs)]
    killed = cancelled = 0
    with d.client() as client:
        acked = [job.id for job in client.enqueue_many(specs)]
        actions = ["kill"] * kills + ["cancel"] * cancels
        rng.shuffle(actions)
        for action in actions:
            time.sleep(every)  # the pace of the chaos, not a wait for an event
            victim = busy_worker(client, timeout=5.0)
            if victim is None:
                break  # the jobs ran out
            if action == "kill":
                os.kill(victim.pid, signal.SIGKILL)
                killed += 1
            elif victim.job is not None:
                client.cancel(victim.job)
                cancelled += 1
        jobs_now = wait_all(client, acked, timeout=jobs * 0.5 / workers * 3 + 60)
        check_live(d, acked)
        stuck = [job.id for job in jobs_now.values() if job.state not in TERMINAL_STATES]
        assert not stuck, f"jobs not ended: {stuck[:10]}"
        states = Counter(job.state.value for job in jobs_now.values())
        left = strays(d, client, mark)
        assert not left, f"processes outlived their jobs: {[p.cmdline() for p in left][:5]}"

        # The drain: one stubborn job per worker, each holding its channel in a fork.
        stubborn_payload = {
            "ledger": str(ledger_path),
            "spawn": list(SPAWN_WAYS),
            "ignore_term": True,
            "seconds": 300,
            "stubborn": True,
        }
        kinds_of_stubborn = (["CHAOS_SPAWN", "CHAOS_ASYNC_SPAWN"] * workers)[:workers]
        stubborn = [client.enqueue(kind, stubborn_payload).id for kind in kinds_of_stubborn]
        ledger.wait_for(lambda lg: all(lg.started(job_id) for job_id in stubborn), what="starts")
        assert {w.job for w in client.status().workers} == set(stubborn)
        assert all(job.state == JobState.RUNNING for job in fetch(client, stubborn).values())
    assert d.proc is not None
    d.remember()
    sent = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    code = d.proc.wait(drain + grace + 60)
    took = time.monotonic() - sent
    assert code == 0, f"semanticad exited {code} on SIGTERM:\n{d.log()[-3000:]}"
    assert took <= drain + grace + EXIT_SLACK_S, f"exited {took:.2f} s after SIGTERM"
    deadline = time.monotonic() + 2.0  # (the kernel finishes the last exits)
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes outlived the supervisor: {[p.cmdline() for p in left][:5]}"
    # Exec jobs write no ledger lines: the ledger check is the handlers' alone, below.
    checked = check_after(d, [*acked, *stubborn], None)
    ledger.read()
    handler_jobs = [i for i, spec in zip(acked, specs, strict=True) if spec["type"] != "exec"]
    undone = [
        i
        for i in handler_jobs
        if jobs_now[i].state == JobState.DONE and not ledger.ended(i, jobs_now[i].attempts)
    ]
    assert not undone, f"DONE jobs without their ledger end line: {undone[:10]}"
    assert checked.by_state["RUNNING"] == 0
    ended = sum(
        e.get("count", 0) for e in events(d, "ended processes a dead worker's job left running")
    )
    kinds = Counter(spec["type"] for spec in specs)
    return (
        f"containment: jobs={jobs} (plain={kinds['CHAOS_SPAWN']} "
        f"async={kinds['CHAOS_ASYNC_SPAWN']} exec={kinds['exec']}) workers={workers} "
        f"kills={killed} cancels={cancelled} "
        f"{' '.join(f'{s}={n}' for s, n in sorted(states.items()))} "
        f"orphans of killed workers ended by the supervisor={ended} processes left=0; "
        f"SIGTERM with {workers} stubborn jobs: exit {code} in {took:.2f}s "
        f"(drain {drain}s + grace {grace}s) time={time.monotonic() - began:.1f}s"
    )
