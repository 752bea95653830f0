"""The options that describe a job, declared once for every ``semctl`` command that makes
one: ``enqueue`` and ``schedule add`` (its template).

Each is a typer parameter type (``Annotated``) that a command names in its
signature; the default is the command's, given there. The fast path of
``semctl enqueue`` (enqueue_cmd.py) has its own table of these options, which
a unit test holds to the typer command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TypeArg = Annotated[str, typer.Argument(metavar="TYPE", help="Job type, e.g. exec.")]
ArgvArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[-- ARGV...]", help="For exec: the command to run.", show_default=False
    ),
]
Queue = Annotated[str, typer.Option(help="Queue name.")]
Subject = Annotated[str | None, typer.Option(help="What the job is about.", show_default=False)]
Priority = Annotated[int, typer.Option(help="Higher runs first (-1000..1000).")]
Payload = Annotated[str | None, typer.Option(help="Payload as JSON.", show_default=False)]
PayloadFile = Annotated[
    Path | None, typer.Option(help="Read the payload JSON from a file.", show_default=False)
]
MaxAttempts = Annotated[int, typer.Option(help="Runs before the job is FAILED.")]
Timeout = Annotated[
    float | None, typer.Option(help="Seconds an attempt may run.", show_default=False)
]
Backoff = Annotated[
    float | None,
    typer.Option(help="Base seconds between retries (default 2).", show_default=False),
]
RequireCharging = Annotated[bool, typer.Option(help="Start only on AC power.")]
RequireIdle = Annotated[bool, typer.Option(help="Start only when the CPU is idle.")]
Env = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        metavar="NAME=VALUE",
        help="For exec: set a variable for the command (repeatable).",
        show_default=False,
    ),
]
NoEnv = Annotated[
    bool,
    typer.Option(
        "--no-env",
        help="For exec: run with the supervisor's environment, not yours (and --env).",
    ),
]
