"""``semanticad``: run the supervisor in the foreground.

Flags override the ``SEMANTICA_*`` environment variables of the same name.
Exit status: 0 after a clean shutdown; 2 for a bad setting or a state
directory that cannot be used (one line on stderr says why); 1 if the
supervisor could not start otherwise (a handler module fails to import, the
database cannot be opened).
"""

from __future__ import annotations

import argparse
import sys

from semantica import __version__
from semantica.errors import SemanticaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semanticad",
        description="Run the Semantica supervisor in the foreground (Ctrl-C or SIGTERM drains).",
    )
    parser.add_argument("--version", action="version", version=f"semanticad {__version__}")
    parser.add_argument("--home", help="state directory (SEMANTICA_HOME)")
    parser.add_argument("--socket", help="control socket path (SEMANTICA_SOCKET)")
    parser.add_argument("--workers", help="number of worker processes (SEMANTICA_WORKERS)")
    parser.add_argument(
        "--handlers", help="comma-separated handler modules for workers (SEMANTICA_HANDLERS)"
    )
    parser.add_argument(
        "--log-format", choices=["json", "pretty"], help="log format (SEMANTICA_LOG_FORMAT)"
    )
    parser.add_argument(
        "--drain-timeout", help="seconds running jobs get on shutdown (SEMANTICA_DRAIN_TIMEOUT)"
    )
    parser.add_argument(
        "--durability", choices=["full", "normal"], help="commit durability (SEMANTICA_DURABILITY)"
    )
    parser.add_argument(
        "--power", choices=["auto", "ac", "battery"], help="power source (SEMANTICA_POWER)"
    )
    parser.add_argument(
        "--retention-days", help="days finished jobs are kept (SEMANTICA_RETENTION_DAYS)"
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Imported here so that --help and --version stay instant.
    import trio

    from semantica.config import Settings
    from semantica.supervisor.app import Supervisor
    from semantica.supervisor.log import configure

    try:
        settings = Settings.from_env(
            home=args.home,
            socket=args.socket,
            workers=args.workers,
            handlers=args.handlers,
            log_format=args.log_format,
            drain_timeout=args.drain_timeout,
            durability=args.durability,
            power=args.power,
            retention_days=args.retention_days,
        )
    except SemanticaError as exc:
        print(f"semanticad: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    configure(settings.log_format)
    try:
        trio.run(Supervisor(settings).run)
    except* SemanticaError as group:
        first = _first_leaf(group)
        print(f"semanticad: {first.message}", file=sys.stderr)
        sys.exit(first.exit_code)


def _first_leaf(group: BaseExceptionGroup[SemanticaError]) -> SemanticaError:
    """Nurseries nest exception groups; the user needs the one error inside."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, SemanticaError)
    return error
