"""``python -m bench.web``: what the web view costs the supervisor with 100,000 jobs.

For each store (SQLite, and PostgreSQL on a throwaway server: bench/pgserver.py), a real
``semanticad`` with 2 workers is filled through its socket (``enqueue_many``) with
``--jobs`` jobs of mixed states, ids interleaved as a real history would have them:
about 55 % DONE, 10 % FAILED, 10 % CANCELLED, 5 % SUPERSEDED and 20 % QUEUED (in a
paused queue), over four queues and four types, each job with its own subject. Then:

* **list**: the ``list`` request the jobs page sends (``ListJobs``, paged, 50 jobs, the
  first page with its count), for every combination of the filters state / queue / type
  / subject, and the same a page deep (``before`` = an id near the oldest): p50 and p95
  of ``--rounds`` requests, from the client's side (the socket's round trip included).
* **top**: one client asks ``top`` once a second for ``--top-seconds`` (what one
  dashboard's live updates ask of the supervisor): the supervisor's CPU over that time
  (psutil, its process's user + system time) in % of one core, and the time of one
  ``top`` request, p50 / p95. On PostgreSQL, the server's CPU (the postmaster and its
  backends) over the same time besides.
* **web**: ``semctl web`` for the same supervisor (bench/web_http.py), logged in with
  its one-time link: the wall time over HTTP of the jobs page (no filter, by state, by
  queue, by type and state, a page deep), a job's page and the dashboard, p50 / p95 of
  ``--rounds`` requests; then, for ``--live-seconds`` each, the CPU (% of a core) of
  the supervisor and of ``semctl web`` with nothing open, 1 and 5 dashboards open
  (clients reading ``/live/dashboard``), and, while jobs run (``RATE`` a second
  enqueued), with nothing open and with 5 jobs pages open (``/live/jobs``); and
  ``semctl web``'s RSS at the end.

Prints Markdown tables; takes about ten minutes per store here.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import psutil

from bench.pgserver import PgServer
from bench.semantica_engine import Engine
from bench.web_http import Listeners, WebView
from semantica import Client
from semantica.protocol import JobList, ListJobs

#: Enqueued in requests of this many (``enqueue_many`` slices them as it must anyway).
PIECE = 2_000
#: Jobs waited for per request (the supervisor takes at most 10,000).
WAIT_PIECE = 10_000
#: The queues jobs run in; HELD is paused, so that what is enqueued there stays QUEUED
#: (or is cancelled, or superseded).
QUEUES = ("default", "mail", "index")
HELD = "reports"
#: The filter values asked about (FILTERS): a state of a tenth of the jobs, a queue of
#: a quarter, a type of a tenth; the subject is SUBJECT's, a FAILED job of ``mail``.
STATE, QUEUE, TYPE = "FAILED", "mail", "FAIL"
SUBJECT = "item-{}"
#: Jobs enqueued a second while the jobs pages are measured (they run at once).
RATE = 10


def _kind(rng: random.Random) -> str:
    """What one job of the fill becomes."""
    return rng.choices(
        ["done", "failed", "cancelled", "superseded", "queued"], [55, 10, 10, 5, 20]
    )[0]


def _spec(n: int, kind: str, rng: random.Random) -> dict[str, Any]:
    subject = SUBJECT.format(n)
    if kind == "done":
        return {
            "type": rng.choice(["NOOP", "STAMP", "ANOOP"]),
            "queue": rng.choice(QUEUES),
            "subject": subject,
        }
    if kind == "failed":
        return {"type": "FAIL", "queue": rng.choice(QUEUES), "subject": subject, "max_attempts": 1}
    # Held: stays QUEUED, or is cancelled, or superseded by a generation enqueued later.
    return {"type": "NOOP", "queue": HELD, "subject": subject, "generation": 1}


def fill(client: Client, count: int, seed: int = 16) -> dict[str, int]:
    """``count`` jobs of mixed states (see the module's docstring); their count by kind,
    and ``"middle"``, the id of the FAILED ``mail`` job whose subject FILTERS name."""
    rng = random.Random(seed)
    client.pause(HELD)
    kinds: list[str] = []
    while len(kinds) + kinds.count("superseded") < count:  # each superseded one: two jobs
        kinds.append(_kind(rng))
    middle = len(kinds) // 2
    kinds[middle] = "failed"
    to_wait: list[int] = []
    to_cancel: list[int] = []
    middle_id = 0
    for start in range(0, len(kinds), PIECE):
        specs = [_spec(n, kinds[n], rng) for n in range(start, min(len(kinds), start + PIECE))]
        if start <= middle < start + PIECE:
            specs[middle - start]["queue"] = QUEUE
        for n, job in enumerate(client.enqueue_many(specs), start):
            middle_id = job.id if n == middle else middle_id
            if kinds[n] in ("done", "failed"):
                to_wait.append(job.id)
            elif kinds[n] == "cancelled":
                to_cancel.append(job.id)
    for start in range(0, len(to_cancel), PIECE):
        client.cancel(*to_cancel[start : start + PIECE])
    # The newest jobs: each a later generation of a held job's subject, which it supersedes.
    superseded = [n for n, kind in enumerate(kinds) if kind == "superseded"]
    for start in range(0, len(superseded), PIECE):
        newer = [
            {"type": "NOOP", "queue": HELD, "subject": SUBJECT.format(n), "generation": 2}
            for n in superseded[start : start + PIECE]
        ]
        client.enqueue_many(newer)
    for start in range(0, len(to_wait), WAIT_PIECE):
        client.wait_many(to_wait[start : start + WAIT_PIECE], timeout=3600)
    counts = {kind: kinds.count(kind) for kind in set(kinds)}
    counts["middle"] = middle_id
    return counts


def filter_sets(subject: str) -> list[dict[str, str]]:
    """Every combination of the four filters, none first."""
    values = {"state": STATE, "queue": QUEUE, "type": TYPE, "subject": subject}
    names = list(values)
    return [
        {name: values[name] for name in chosen}
        for size in range(len(names) + 1)
        for chosen in itertools.combinations(names, size)
    ]


def _timed(call: Callable[[], object], rounds: int) -> list[float]:
    """Milliseconds of ``rounds`` calls (after one untimed)."""
    call()
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        took.append(1000 * (time.perf_counter() - started))
    return took


def _p(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lists(client: Client, deep: int, subject: str, rounds: int) -> list[tuple[str, str, str]]:
    """(filters, first page p50 / p95, the page before id ``deep`` p50 / p95), in ms, for
    each filter set."""
    rows = []
    for filters in filter_sets(subject):
        first = ListJobs(
            state=filters.get("state"),
            queue=filters.get("queue"),
            type=filters.get("type"),
            subject=filters.get("subject"),
            limit=50,
            paged=True,
        )

        def ask(request: ListJobs) -> Callable[[], object]:
            return lambda: client._expect(client._call(request), JobList)

        name = " ".join(f"{k}={v}" for k, v in filters.items()) or "(none)"
        cells = []
        for request in (first, msgspec.structs.replace(first, before=deep)):
            took = _timed(ask(request), rounds)
            cells.append(f"{_p(took, 0.5):.2f} / {_p(took, 0.95):.2f}")
        rows.append((name, cells[0], cells[1]))
    return rows


def _cpu(processes: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # a backend that ended meanwhile: its time is lost
            continue
        total += times.user + times.system
    return total


def tops(
    client: Client, supervisor: int, seconds: float, server: Callable[[], list[psutil.Process]]
) -> dict[str, float]:
    """One ``top`` a second for ``seconds``: CPU of the supervisor (and of the database
    server) in % of a core, and the request's time in ms."""
    own = [psutil.Process(supervisor)]
    took: list[float] = []
    client.top()
    backends = server()
    before, before_server = _cpu(own), _cpu(backends)
    started = time.monotonic()
    for tick in itertools.count(1):
        asked = time.perf_counter()
        client.top()
        took.append(1000 * (time.perf_counter() - asked))
        if tick >= seconds:
            break
        time.sleep(max(0.0, started + tick - time.monotonic()))
    elapsed = time.monotonic() - started
    return {
        "cpu": 100 * (_cpu(own) - before) / elapsed,
        "server_cpu": 100 * (_cpu(backends) - before_server) / elapsed,
        "p50": _p(took, 0.5),
        "p95": _p(took, 0.95),
        "requests": len(took),
    }


def pages(view: WebView, middle: int, deep: int, rounds: int) -> list[tuple[str, float, float]]:
    """(path, p50, p95 in ms) of each page the web view's users open most."""
    paths = [
        "/jobs",
        f"/jobs?state={STATE}",
        f"/jobs?queue={QUEUE}",
        "/jobs?type=STAMP&state=DONE",
        f"/jobs?before={deep}",
        f"/jobs/{middle}",
        "/",
    ]
    rows = []
    for path in paths:
        took = _timed(functools.partial(view.timed, path), rounds)
        rows.append((path, _p(took, 0.5), _p(took, 0.95)))
    return rows


def live(
    view: WebView, supervisor: int, path: str, n: int, seconds: float, home: Path | None
) -> dict[str, float]:
    """CPU (% of a core) of the supervisor and of ``semctl web`` while ``n`` clients read
    ``path`` for ``seconds``; with ``home``, RATE jobs a second are enqueued meanwhile."""
    own, web = psutil.Process(supervisor), psutil.Process(view.pid)
    stop = threading.Event()

    def enqueue() -> None:
        assert home is not None
        with Client(home=home) as client:
            started = time.monotonic()
            for tick in itertools.count(1):
                client.enqueue("NOOP", queue="default")
                if stop.wait(max(0.0, started + tick / RATE - time.monotonic())):
                    return

    feeder = threading.Thread(target=enqueue) if home is not None else None
    if feeder is not None:
        feeder.start()
    try:
        with Listeners(view, path, n) as listeners:
            time.sleep(2)  # connected, the first fragments drawn
            before, before_web, events = _cpu([own]), _cpu([web]), listeners.events
            started = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - started
            figures = {
                "cpu": 100 * (_cpu([own]) - before) / elapsed,
                "web_cpu": 100 * (_cpu([web]) - before_web) / elapsed,
                "events": listeners.events - events,
            }
    finally:
        stop.set()
        if feeder is not None:
            feeder.join()
    return figures


def web_figures(engine: Engine, middle: int, deep: int, args: argparse.Namespace) -> None:
    """Part (c): the pages over HTTP and the live updates' CPU; prints two tables."""
    assert engine.proc is not None
    with WebView(engine.env()) as view:
        print("\n| page (semctl web, over HTTP) | p50 / p95 ms |\n|---|---:|")
        for path, p50, p95 in pages(view, middle, deep, args.rounds):
            print(f"| `{path}` | {p50:.1f} / {p95:.1f} |")
        sys.stdout.flush()
        cases = [
            ("nothing open", "/live/dashboard", 0, False),
            ("1 dashboard", "/live/dashboard", 1, False),
            ("5 dashboards", "/live/dashboard", 5, False),
            (f"jobs running ({RATE}/s), nothing open", "/live/jobs", 0, True),
            (f"jobs running ({RATE}/s), 5 jobs pages", "/live/jobs", 5, True),
        ]
        print(
            f"\n| open for {args.live_seconds:g} s | supervisor CPU % | semctl web CPU % "
            "| events |\n|---|---:|---:|---:|"
        )
        for name, path, n, running in cases:
            got = live(
                view, engine.proc.pid, path, n, args.live_seconds, engine.home if running else None
            )
            print(f"| {name} | {got['cpu']:.2f} | {got['web_cpu']:.2f} | {got['events']:.0f} |")
            sys.stdout.flush()
        rss = psutil.Process(view.pid).memory_info().rss
        print(f"\nsemctl web RSS at the end: {rss / 1e6:.1f} MB")


@contextmanager
def sqlite_engine() -> Iterator[tuple[Engine, Callable[[], list[psutil.Process]]]]:
    with Engine(workers=2) as engine:
        yield engine, list


@contextmanager
def postgres_engine() -> Iterator[tuple[Engine, Callable[[], list[psutil.Process]]]]:
    with PgServer() as server:
        name, url = server.create("web")
        pid_file = Path(server.cluster.data) / "postmaster.pid"

        def processes() -> list[psutil.Process]:
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            return [postmaster, *postmaster.children()]

        try:
            with Engine(workers=2, durability=None, args=["--store", url]) as engine:
                yield engine, processes
        finally:
            server.drop(name)


def run(store: str, args: argparse.Namespace) -> None:
    opener = sqlite_engine if store == "sqlite" else postgres_engine
    with opener() as (engine, server):
        assert engine.proc is not None
        with Client(home=engine.home) as client:
            started = time.monotonic()
            counts = fill(client, args.jobs)
            filled = time.monotonic() - started
            subject = client.get(counts["middle"]).subject
            assert subject is not None
            low = 101  # a fresh store's ids start at 1: the deep page is the oldest 100
            print(f"\n## {store}: {args.jobs:,} jobs, filled in {filled:.0f} s ({_mix(counts)})\n")
            print("| filters | first page p50 / p95 ms | deep page p50 / p95 ms |")
            print("|---|---:|---:|")
            for name, one, deep in lists(client, low, subject, args.rounds):
                print(f"| {name} | {one} | {deep} |")
            top = tops(client, engine.proc.pid, args.top_seconds, server)
            print(f"\n| top once a second for {args.top_seconds:g} s | figure |\n|---|---:|")
            print(f"| supervisor CPU | {top['cpu']:.2f} % of a core |")
            if store == "postgres":
                print(f"| PostgreSQL server CPU | {top['server_cpu']:.2f} % of a core |")
            print(f"| one top request, p50 / p95 | {top['p50']:.1f} / {top['p95']:.1f} ms |")
            sys.stdout.flush()
            if not args.no_web:
                web_figures(engine, counts["middle"], low, args)


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{counts[k]:,} {k}" for k in sorted(counts) if k != "middle")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20, help="requests per list figure")
    parser.add_argument("--top-seconds", type=float, default=60.0)
    parser.add_argument(
        "--live-seconds", type=float, default=60.0, help="each live-update figure's window"
    )
    parser.add_argument("--no-web", action="store_true", help="leave semctl web out")
    parser.add_argument(
        "--store", choices=["sqlite", "postgres", "both"], default="both", help="which store"
    )
    args = parser.parse_args()
    for store in ("sqlite", "postgres"):
        if args.store in (store, "both"):
            run(store, args)


if __name__ == "__main__":
    main()
