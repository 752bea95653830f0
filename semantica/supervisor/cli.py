"""``semanticad``: run the supervisor in the foreground.

Flags override the ``SEMANTICA_*`` environment variables of the same name.
Exit status: 0 after a clean shutdown; 2 for a bad setting or a state
directory that cannot be used (one line on stderr says why); 1 if the
supervisor could not start otherwise (a handler module fails to import, the
database cannot be opened, the disk is full).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import TYPE_CHECKING

from semantica import __version__
from semantica.errors import SemanticaError

if TYPE_CHECKING:
    from semantica.config import Settings

# (flag, help, choices): each flag is also SEMANTICA_<FLAG> and Settings.<flag>.
FLAGS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("home", "state directory", None),
    ("socket", "control socket path", None),
    ("workers", "number of worker processes", None),
    ("handlers", "comma-separated handler modules for workers", None),
    ("log_format", "log format", ("json", "pretty")),
    ("drain_timeout", "seconds running jobs get on shutdown", None),
    ("durability", "commit durability", ("full", "normal")),
    ("power", "power source for --require-charging", ("auto", "ac", "battery")),
    ("idle_cpu", "CPU %% under which --require-idle jobs may start", None),
    ("idle_window", "seconds the CPU must stay under it", None),
    ("cancel_grace", "seconds a cancelled or timed-out job gets to stop", None),
    ("heartbeat_timeout", "seconds a busy worker may stay silent before it is killed", None),
    ("retention_days", "days finished jobs are kept before maintenance deletes them", None),
    ("maintenance_hours", "hours between maintenance runs", None),
    ("metrics_addr", "HOST:PORT to serve Prometheus /metrics on (loopback)", None),
    ("metrics_public", "1: allow a metrics address beyond loopback", ("0", "1")),
    ("store", "a postgresql:// connection string (default: SQLite in the state directory)", None),
    ("node_name", "this supervisor's name among the nodes of a shared store", None),
    ("node_timeout", "seconds a silent node has before the others declare it dead", None),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semanticad",
        description="Run the Semantica supervisor in the foreground (Ctrl-C or SIGTERM drains).",
    )
    parser.add_argument("--version", action="version", version=f"semanticad {__version__}")
    for name, text, choices in FLAGS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            choices=choices,
            help=f"{text} (SEMANTICA_{name.upper()})",
        )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    migrate = commands.add_parser(
        "migrate",
        help="move the database schema up (default: to the newest) or down, then exit",
        description="Move the job database's schema to a version, one transaction per step, "
        "keeping every job. Stop the supervisor first. Example: semanticad migrate --to 1",
    )
    migrate.add_argument("--to", type=int, help="schema version (default: the newest)")
    migrate.add_argument("--home", dest="migrate_home", help="state directory (SEMANTICA_HOME)")
    return parser


def migrate(settings: Settings, to: int | None) -> None:
    """``semanticad migrate``: take the lock (no supervisor may run), move, report.

    On a new state directory it makes the directory and the database, as the
    supervisor's first start would, private whatever the caller's umask.
    """
    from semantica.supervisor.app import state_error
    from semantica.supervisor.lock import acquire_lock
    from semantica.supervisor.security import prepare_home
    from semantica.supervisor.store import open_store

    # As the supervisor does: what is made here (directory, database, its WAL,
    # the lock file, backups) is the user's alone.
    os.umask(0o077)
    where = settings.store_shown
    try:
        prepare_home(settings.paths.home)
        lock = acquire_lock(settings.paths.lock)
    except OSError as exc:
        raise state_error(settings.paths.home, exc) from None
    try:
        store = open_store(settings.store_location, durability=settings.durability)
        try:
            change = store.migrate(to)
            newest_version = store.newest_schema_version
        finally:
            store.close()
    finally:
        lock.close()
    newest = f"this Semantica's newest is {newest_version}"
    if change.before == 0:
        print(f"created schema {change.after} in {where} ({newest})")
    elif change.before == change.after:
        print(f"schema {change.after}: nothing to do ({newest})")
    else:
        copied = f"; copied the database to {change.backup} first" if change.backup else ""
        print(f"schema {change.before} -> {change.after} ({newest}){copied}")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Imported here so that --help and --version stay instant.
    import trio

    from semantica.config import Settings
    from semantica.supervisor.app import Supervisor
    from semantica.supervisor.log import configure, flush

    flags = {name: getattr(args, name) for name, _, _ in FLAGS}
    if args.command == "migrate" and args.migrate_home:
        flags["home"] = args.migrate_home
    try:
        settings = Settings.from_env(**flags)
        if args.command == "migrate":
            migrate(settings, args.to)
            return
    except SemanticaError as exc:
        print(f"semanticad: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    configure(settings.log_format)
    # A file size limit (RLIMIT_FSIZE) must make writes fail, so the store can
    # report a full disk, rather than kill the supervisor with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        trio.run(Supervisor(settings).run)
    except* SemanticaError as group:
        first = _first_leaf(group)
        flush()  # the log lines queued for stderr first (for a second at most), then why
        print(f"semanticad: {first.message}", file=sys.stderr)
        sys.exit(first.exit_code)


def _first_leaf(group: BaseExceptionGroup[SemanticaError]) -> SemanticaError:
    """Nurseries nest exception groups; the user needs the one error inside."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, SemanticaError)
    return error
