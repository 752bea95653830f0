"""``semctl web``: the browser view (see docs/web.md).

The view's code (starlette, hypercorn, templates) is imported inside the command, so
every other ``semctl`` command starts as fast without it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from semantica.control.cli_common import State, edge

DEFAULT_ADDR = "127.0.0.1:7433"


def web(
    addr: Annotated[
        str,
        typer.Option(
            help="Where to listen, HOST:PORT (port 0: any free port). A non-loopback "
            "address is served with a warning."
        ),
    ] = DEFAULT_ADDR,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the login URL in a browser.")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Another name the view may be reached by (its Host header), e.g. behind "
            "an SSH tunnel or a proxy; repeatable.",
        ),
    ] = None,
) -> None:
    """Serve the browser view: dashboard, jobs, live logs, actions. Prints a one-time login URL."""
    with edge():
        from semantica.control.web.serve import run

        run(addr, open_browser, allow_host or [], State.home, State.socket)
