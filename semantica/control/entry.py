"""The ``semctl`` entry point: ``semctl enqueue`` takes a fast path; the rest goes to typer.

Kept free of heavy imports (typer, rich, trio, structlog): see enqueue_cmd.py.
"""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "enqueue":
        # msgspec uses typing_extensions only when it can import it, and needs
        # nothing from it that this Python's typing lacks; importing it (and the
        # inspect module it pulls in) costs ~17 ms of a command that editors run
        # once per file. Hidden while msgspec loads, so it takes typing's; the
        # full CLI below imports the real one.
        hide = "typing_extensions" not in sys.modules
        if hide:
            sys.modules["typing_extensions"] = None  # type: ignore[assignment]
        try:
            from semantica.control.enqueue_cmd import fast_main
        finally:
            if hide:
                del sys.modules["typing_extensions"]

        code = fast_main(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    from semantica.control.cli import main as typer_main

    typer_main()
