"""The ``semctl`` entry point: ``semctl enqueue`` takes a fast path; the rest goes to typer.

Kept free of heavy imports (typer, rich, trio, structlog): see enqueue_cmd.py.
"""

from __future__ import annotations

import errno
import os
import sys


def main() -> None:
    try:
        code = _run()
        sys.stdout.flush()  # here, where a full disk or a closed pipe can be reported
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRORS:
            raise
        # Nothing more may reach the broken stdout, not even at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.stderr.write(f"semctl: cannot write the output: {exc.strerror or exc}\n")
        code = 1
    sys.exit(code)


#: What writing to stdout fails with when it is a closed pipe, a full disk, ...
_OUTPUT_ERRORS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT})


def _run() -> int:
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
            return code
    from semantica.control.cli import main as typer_main

    return typer_main()
