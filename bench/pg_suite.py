"""``python -m bench --postgres``: which engines and workloads the PostgreSQL run has.

One throwaway PostgreSQL server (bench/pgserver.py) for the whole run; ours with 1, 2 and 3
nodes x 2 workers (bench/pg_ours.py) and the PostgreSQL peers, procrastinate and pgqueuer
(bench/pg_peers.py), each instance on a fresh database of that server, interleaved round
by round as the SQLite run is. The peers need the ``bench`` extra; without it they are left
out with a note. Ours needs the PostgreSQL store: without it its runs fail, one line each.
"""

from __future__ import annotations

import argparse
from typing import Any

OURS = ("ours-1n", "ours-2n", "ours-3n")
PEERS = ("procrastinate", "pgqueuer")
ENGINES = (*OURS, *PEERS)
WORKLOADS = ("W1", "W1c", "W2", "W3")
#: Packages whose versions the header and the JSON give.
DISTS = ("procrastinate", "pgqueuer", "asyncpg", "psycopg")


def subjects(args: argparse.Namespace, notes: list[str]) -> tuple[list[Any], Any]:
    """The engines to run and the server they share (a context manager, not started)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SystemExit(
            "python -m bench --postgres needs psycopg: pip install -e '.[bench]'"
        ) from None
    from bench.pg_ours import NO_STORE, OursPg, has_pg_store
    from bench.pgserver import PgServer

    server = PgServer()
    chosen: list[Any] = []
    counts = [int(name[len("ours-")]) for name in OURS if name in args.only]
    if counts and not has_pg_store():
        notes.append(f"{', '.join(f'ours-{c}n' for c in counts)}: {NO_STORE}; the peers still run")
    chosen += [OursPg(server, count) for count in counts]
    wanted = [name for name in PEERS if name in args.only]
    if wanted:
        try:
            import asyncpg  # noqa: F401
            import pgqueuer  # noqa: F401
            import procrastinate  # noqa: F401
        except ImportError as exc:
            notes.append(f"peers skipped: {exc.name} is not installed (pip install -e '.[bench]')")
            return chosen, server
        from bench.pg_peers import PG_PEERS

        chosen += [peer(server) for peer in PG_PEERS if peer.name in wanted]
    return chosen, server
