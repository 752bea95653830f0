"""The ``semctl`` entry point: the commands a person types most take a fast path
(fast_path.py, enqueue_cmd.py); the rest goes to typer.

Kept free of heavy imports (typer, rich, trio, structlog): each command is a new process.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semantica.control.fast_path import Parsed


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
    if "semantica.control.cli" not in sys.modules and _is_program():
        # The fast path ran, and its output is flushed: tearing the interpreter down
        # (freeing every module and object one by one) would take 5-10 ms more, for a
        # process that holds no file, socket or exit hook that the kernel's own clean-up
        # does not cover. (typer's path exits as usual; so does main() run as a library.)
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _is_program() -> bool:
    """Whether this process is ``semctl`` itself (the console script, or ``python -m
    semantica.control``), not a program that called main()."""
    program = sys.modules.get("__main__")
    spec = getattr(program, "__spec__", None)
    if spec is not None:
        return bool(spec.name == "semantica.control.__main__")
    return os.path.basename(getattr(program, "__file__", None) or "") == "semctl"


#: What writing to stdout fails with when it is a closed pipe, a full disk, ...
_OUTPUT_ERRORS = frozenset({errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT})


def _run() -> int:
    from semantica.control.fast_path import parse

    parsed = parse(sys.argv[1:])
    if parsed is not None:
        code = _run_fast(parsed)
        if code is not None:
            return code
    from semantica.control.cli import main as typer_main

    return typer_main()


def _run_fast(parsed: Parsed) -> int | None:
    """Run a command on the fast path; None if typer must handle it after all."""
    if parsed.command == "--help":
        from semantica.control.fast_path import top_help

        text = top_help()
        if text is None:
            return None
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`semctl --help | head -1`): quietly, as click does,
            # and nothing more may reach the pipe, not even at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        return 0
    # msgspec uses typing_extensions only when it can import it, and needs
    # nothing from it that this Python's typing lacks; importing it (and the
    # inspect module it pulls in) costs ~17 ms of a command that editors run
    # once per file. Hidden while msgspec loads, so it takes typing's; the
    # full CLI imports the real one.
    hide = "typing_extensions" not in sys.modules
    if hide:
        sys.modules["typing_extensions"] = None  # type: ignore[assignment]
    try:
        if parsed.command == "enqueue":
            from semantica.control.enqueue_cmd import fast_main
        else:
            from semantica.control import read_cmds, write_cmds  # noqa: F401 - while hidden
            from semantica.control.fast_path import run

            if parsed.command.startswith("schedule "):
                from semantica.control import schedule_cmds  # noqa: F401 - while hidden
            elif parsed.command in ("tail", "top"):
                from semantica.control import live_cmds  # noqa: F401 - while hidden
    finally:
        if hide:
            del sys.modules["typing_extensions"]
    if parsed.command == "enqueue":
        return fast_main(parsed.rest, parsed.where)
    return run(parsed)
