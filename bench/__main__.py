"""``python -m bench``: Semantica against huey and RQ, same machine, same run, as ratios.

Engines: ours (semanticad, 2 workers, synchronous=FULL), huey-sqlite (huey's
SqliteHuey, 2 process workers), and, when ``redis-server`` is on the PATH,
huey-redis, rq-fork (``rq worker``) and rq-simple (``rq worker`` with
SimpleWorker). Workloads (docs/benchmarks.md has the details):

  W1   enqueue N jobs one at a time from one client         jobs/s
  W1b  the same from 8 client threads (ours also: one pipelining AsyncClient)
  W1c  the batch API (ours: enqueue_many; RQ: enqueue_many; huey: none)
  W2   drain N queued no-op jobs with 2 workers             jobs/s
       (ours also: the same with an async def handler)
  W3   start latency on an idle engine, jobs 20 ms apart    p50/p95/p99 ms
  W4   RSS idle and after W2; CPU while idle for --idle-seconds
  W5   enqueue one job from a new process (ours: semctl)    median ms
       (ours also: semctl status, list, show, wait, logs, --help)

Each workload runs on a fresh instance, --rounds times (engines interleaved
round by round); the tables show medians and ours/peer. Each round also measures
the bound (bench/bound.py): a bare request/reply over a Unix socket, a single-row
and a batched INSERT at synchronous=FULL, a bare process start; the tables give
each workload's bound from those parts and ours/bound (--no-bound leaves it out).
Nothing is installed at run time: the peers come from the ``bench`` extra (pip install
-e '.[bench]').

--postgres runs the PostgreSQL comparison instead, on one throwaway server
(fsync and synchronous_commit on), a fresh database per instance: ours with 1,
2 and 3 nodes x 2 workers (ours-1n, ours-2n, ours-3n) against procrastinate and
pgqueuer, workloads W1, W1c, W2 and W3; the tables give each of ours over the
best peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import bound, pg_suite, table
from bench.ours import Ours
from bench.pg_ours import Unavailable
from bench.table import Figures

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("W1", "W1b", "W1c", "W2", "W3", "W4", "W5")
ENGINES = ("ours", "huey-sqlite", "huey-redis", "rq-fork", "rq-simple")
W5_RUNS = 20


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if dirty else "")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs for W1, W1b, W1c, W2")
    parser.add_argument("--latency-jobs", type=int, default=200, help="jobs for W3")
    parser.add_argument("--idle-seconds", type=float, default=60, help="W4 idle CPU window")
    parser.add_argument("--w5-runs", type=int, default=W5_RUNS, help="new processes for W5")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the PostgreSQL run: ours with 1, 2 and 3 nodes against procrastinate and pgqueuer",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=(*ENGINES, *pg_suite.ENGINES),
        help=f"engines: {', '.join(ENGINES)}; with --postgres: {', '.join(pg_suite.ENGINES)}",
    )
    parser.add_argument(
        "--workloads",
        nargs="+",
        metavar="W",
        choices=WORKLOADS,
        help=f"of {', '.join(WORKLOADS)}; with --postgres: {', '.join(pg_suite.WORKLOADS)}",
    )
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument(
        "--no-bound",
        dest="bound",
        action="store_false",
        help="leave out the bound (bench/bound.py), measured each round otherwise",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check that it all works: 200 jobs, 1 round, idle 2 s, ours and huey-sqlite "
        "(with --postgres: every engine)",
    )
    args = parser.parse_args(argv)
    engines, workloads = (
        (pg_suite.ENGINES, pg_suite.WORKLOADS) if args.postgres else (ENGINES, WORKLOADS)
    )
    run = "with --postgres" if args.postgres else "without --postgres"
    for name in args.only or []:
        if name not in engines:
            parser.error(f"{name}: not an engine {run} (they are: {', '.join(engines)})")
    for name in args.workloads or []:
        if name not in workloads:
            parser.error(f"{name}: not a workload {run} (they are: {', '.join(workloads)})")
    # The bound's sample sizes: round trips one at a time, single-row commits.
    args.bound_requests, args.bound_commits = 2_000, 300
    if args.postgres:
        args.bound = False  # its parts are SQLite's and a Unix socket's
    if args.smoke:
        args.rounds, args.jobs, args.latency_jobs, args.idle_seconds, args.w5_runs = (
            1,
            200,
            20,
            2,
            3,
        )
        args.bound_requests, args.bound_commits = 300, 30
        if not args.postgres:
            args.only = args.only or ["ours", "huey-sqlite"]
    args.only = args.only or list(engines)
    args.workloads = args.workloads or list(workloads)
    return args


def subjects(args: argparse.Namespace, notes: list[str]) -> tuple[list[Any], Any]:
    """The engines to run (and the Redis or PostgreSQL server, a context manager, when one is
    needed)."""
    if args.postgres:
        return pg_suite.subjects(args, notes)
    chosen: list[Any] = []
    if "ours" in args.only:
        chosen.append(Ours())
    wanted = [name for name in args.only if name != "ours"]
    if not wanted:
        return chosen, None
    try:
        import huey  # noqa: F401
        import redis  # noqa: F401
        import rq  # noqa: F401
    except ImportError as exc:
        notes.append(f"peers skipped: {exc.name} is not installed (pip install -e '.[bench]')")
        return chosen, None
    from bench.peers import PEERS, RedisServer

    server = None
    redis_names = [p.name for p in PEERS if p.uses_redis and p.name in wanted]
    if redis_names:
        executable = RedisServer.find()
        if executable is None:
            notes.append(
                f"no redis-server on PATH: skipped {', '.join(redis_names)} "
                "(install Redis, e.g. apt-get install redis-server, to add them)"
            )
        else:
            server = RedisServer(executable)
    for peer in PEERS:
        if peer.name in wanted and (not peer.uses_redis or server is not None):
            chosen.append(peer(server if peer.uses_redis else None))
    return chosen, server


def run_round(subject: Any, args: argparse.Namespace, log: Callable[[str], None]) -> Figures:
    """Every chosen workload once, each on a fresh instance; a failure costs that workload only."""
    out: Figures = {}
    w = set(args.workloads)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if "W1" in w:
        steps.append(("w1", lambda: subject.w1(args.jobs)))
    if "W1b" in w:
        steps.append(("w1b_threads", lambda: subject.w1b_threads(args.jobs)))
        steps.append(("w1b_async", lambda: subject.w1b_async(args.jobs)))
    if "W1c" in w:
        steps.append(("w1c", lambda: subject.w1c(args.jobs)))
    if "W2" in w or "W4" in w:
        steps.append(
            (
                "w2_w4",
                lambda: subject.w2_w4(args.jobs, args.idle_seconds, "W2" in w, "W4" in w),
            )
        )
    if "W2" in w:
        steps.append(("w2_async", lambda: subject.w2_async(args.jobs)))
    if "W3" in w:
        steps.append(("w3", lambda: subject.w3(args.latency_jobs)))
    if "W5" in w:
        steps.append(("w5", lambda: subject.w5(args.w5_runs)))
    for key, step in steps:
        t0 = time.monotonic()
        try:
            value = step()
        except Unavailable as exc:
            log(f"  {subject.name} {key}: FAILED: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a misbehaving peer must not end the run
            log(f"  {subject.name} {key}: FAILED: {exc!r}")
            traceback.print_exc(file=sys.stderr)
            continue
        figures = value if isinstance(value, dict) else {key: value}
        out.update(figures)
        shown = ", ".join(
            f"{k}={v:,.2f}" if v is not None else f"{k}=n/a" for k, v in figures.items()
        )
        log(f"  {subject.name:11} {shown}  ({time.monotonic() - t0:.1f} s)")
    return out


def measure_bound(args: argparse.Namespace, log: Callable[[str], None]) -> bound.Parts:
    """One round of the bound's parts; a failure costs this round's bound only."""
    t0 = time.monotonic()
    try:
        parts = bound.measure(
            args.workloads,
            requests=args.bound_requests,
            commits=args.bound_commits,
            rows=args.jobs,
            starts=args.w5_runs,
        )
    except Exception as exc:  # noqa: BLE001 - the engines' figures still count
        log(f"  bound: FAILED: {exc!r}")
        traceback.print_exc(file=sys.stderr)
        return {}
    shown = ", ".join(f"{k}={v:,.2f}" for k, v in parts.items())
    log(f"  {'bound':11} {shown}  ({time.monotonic() - t0:.1f} s)")
    return parts


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    # SIGTERM (and SIGINT, which a background job ignores) unwind, so that workers and
    # redis-server are stopped and the temporary directories removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    notes: list[str] = []
    started = time.monotonic()
    commit_at_start, load_at_start = commit(), os.getloadavg()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    chosen, server = subjects(args, notes)
    for note in notes:
        log(f"note: {note}")
    rounds: dict[str, list[Figures]] = {s.name: [] for s in chosen}
    bound_rounds: list[bound.Parts] = []
    if server is not None:
        try:
            server.__enter__()
        except Exception as exc:  # noqa: BLE001 - ClusterError and the like: say why, stop
            raise SystemExit(f"python -m bench: the server did not start: {exc}") from None
    try:
        for r in range(args.rounds):
            log(f"round {r + 1}/{args.rounds}")
            if args.bound:
                bound_rounds.append(measure_bound(args, log))
            for subject in chosen:
                rounds[subject.name].append(run_round(subject, args, log))
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    elapsed = time.monotonic() - started
    commit_at_end = commit()
    if commit_at_end != commit_at_start:
        notes.append(f"the checkout moved during the run: {commit_at_start} -> {commit_at_end}")

    summary = {name: table.medians(figures) for name, figures in rounds.items()}
    parts = bound.medians(bound_rounds)
    bounds = bound.figures(parts) if args.bound else {}
    order = [s.name for s in chosen]
    meta = {
        "commit": commit_at_start,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "load_average_1_5_15": {"start": load_at_start, "end": os.getloadavg()},
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "rounds": args.rounds,
        "jobs": args.jobs,
        "latency_jobs": args.latency_jobs,
        "idle_seconds": args.idle_seconds,
        "seconds": round(elapsed, 1),
        "versions": _versions(server),
    }
    if args.postgres and server is not None:
        meta["postgresql"] = server.description
    sqlite_note = "" if args.postgres else f", SQLite {meta['sqlite']}"
    print(
        f"\nSemantica {meta['commit']} vs peers{' on PostgreSQL' if args.postgres else ''}: "
        f"{args.jobs:,} jobs, {args.latency_jobs} latency jobs, "
        f"{'' if args.postgres else f'idle {args.idle_seconds:g} s, '}"
        f"median of {args.rounds} round(s); "
        f"{meta['machine']}, Python {meta['python']}{sqlite_note}; "
        f"took {elapsed / 60:.1f} min; load average {load_at_start[0]:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at end"
    )
    for s in chosen:
        print(f"  {s.name:12} {s.note}")
    if args.postgres and server is not None:
        print(f"  server       {server.description}")
    for note in notes:
        print(f"  note: {note}")
    print()
    ours = [name for name in order if name in pg_suite.OURS]
    peers = [name for name in order if name in pg_suite.PEERS]
    if args.postgres:
        print(table.render_vs_best(summary, ours, peers))
    else:
        print(table.render(summary, order, bounds))
        if args.bound:
            print(table.render_parts(parts, bound.PARTS))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "engines": {s.name: s.note for s in chosen},
                    "notes": notes,
                    "rounds": rounds,
                    "medians": summary,
                    **(
                        {
                            "best_peer": table.best_peer(summary, peers),
                            "ratios_ours_over_best_peer": table.ratios_vs_best(
                                summary, ours, peers
                            ),
                        }
                        if args.postgres
                        else {
                            "ratios_ours_over_peer": table.ratios(summary),
                            "bound": {
                                "rounds": bound_rounds,
                                "parts": parts,
                                "figures": bounds,
                                "ours_over_bound": table.over_bound(
                                    summary.get(table.OURS, {}), bounds
                                ),
                            },
                        }
                    ),
                },
                indent=2,
            )
        )


def _versions(server: Any) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("semantica", "huey", "rq", "redis", *pg_suite.DISTS):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    if server is not None and hasattr(server, "settings"):
        out["postgresql"] = server.settings.get("server_version", "?")
    elif server is not None:
        out["redis-server"] = server.version
    return out


if __name__ == "__main__":
    main()
