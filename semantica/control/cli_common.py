"""What every ``semctl`` command module shares: the connection settings, the error edge,
and ``--json`` output.

Library errors become a one-line message on stderr and the exit status the
README documents (:func:`edge`); ``--json`` prints one JSON document
(:func:`print_json`). Used by cli.py and by the command modules it registers
(schedule_cmd.py), which cannot import cli.py (it imports them). ``print_json`` and
``fields_of`` live in read_cmds.py, which the fast path uses without typer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from semantica.control.client import Client
from semantica.control.read_cmds import fields_of, print_json
from semantica.control.terminal import printable
from semantica.errors import SemanticaError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


class State:
    """``--home`` and ``--socket``, as semctl's callback was given them."""

    home: str | None = None
    socket: str | None = None


def new_client() -> Client:
    return Client(home=State.home, socket=State.socket)


def fail(message: str, code: int) -> NoReturn:
    # An error may quote what a job holds (a subject, a queue): escaped like any view.
    print(f"semctl: {printable(message)}", file=sys.stderr)
    raise typer.Exit(code)


@contextmanager
def edge() -> Iterator[None]:
    """Turn library errors into a one-line message and semctl's exit status."""
    try:
        yield
    except SemanticaError as exc:
        fail(exc.message, exc.exit_code)


__all__ = ["JsonOpt", "State", "edge", "fail", "fields_of", "new_client", "print_json"]
