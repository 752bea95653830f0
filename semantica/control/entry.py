"""The ``semctl`` entry point: ``semctl enqueue`` takes a fast path; the rest goes to typer.

Kept free of heavy imports (typer, rich, trio, structlog): see enqueue_cmd.py.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "enqueue":
        from semantica.control.enqueue_cmd import fast_main

        code = fast_main(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    from semantica.control.cli import main as typer_main

    typer_main()
