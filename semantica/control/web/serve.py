"""``semctl web``: bind, print the login URL, serve until SIGINT or SIGTERM.

Contract:

* The address is bound before anything else, so a bad ``--addr`` or a port in use
  is a one-line error (exit 2) and nothing starts. Port 0 takes a free port. A port
  held by another user of the machine is said to be so (it may serve a look-alike
  login page, to catch the token).
* Then exactly one line goes to stdout, flushed at once, for people and scripts:
  ``Semantica web view: http://HOST:PORT/login?code=CODE`` (a one-time login code).
  Everything else goes to stderr.
* A non-loopback address is served (the user asked for it) with a loud warning:
  plain HTTP, reachable by others. Connections from other users of this machine
  are refused, whatever the address (:mod:`.peers`).
* The supervisor need not be running: pages say it is not reachable until it is.
* SIGINT or SIGTERM stop it: open live streams are cut, it exits 0.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
import webbrowser
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from semantica.config import locate
from semantica.control.async_client import AsyncClient
from semantica.control.client import read_token
from semantica.control.web.access import Web, templates
from semantica.control.web.app import build
from semantica.control.web.guard import allowed_hosts
from semantica.control.web.live import ChangeFeed, TopFeed
from semantica.control.web.peers import listener_uid
from semantica.control.web.sessions import Sessions
from semantica.control.web_addr import is_loopback, parse_addr, url_host
from semantica.errors import BadInput, SemanticaError


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (BadInput, one line, if the address cannot be had)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1" if host == "localhost" else host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        why = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            # Most often a view left running in another terminal (or its service); when
            # another user holds it, say so: its login page is not this view's.
            why += _whose(host, port) or (
                " (another semctl web? stop it, or choose a port with --addr HOST:PORT)"
            )
        raise BadInput(why) from None
    sock.set_inheritable(True)
    return sock


def _whose(host: str, port: int) -> str:
    """Who holds a port already, when it is another user: a page served there that asks
    for the token is not this view, whatever it looks like."""
    uid = listener_uid("127.0.0.1" if host == "localhost" else host, port)
    if uid is None or uid == os.getuid():
        return ""
    return (
        f" (another user of this machine, uid {uid}, listens there: what it serves is not"
        " your web view, do not log in to it; choose another port with --addr)"
    )


WARNING = """\
WARNING: semctl web listens on {addr}, which is not a loopback address.
WARNING: anyone who can reach this port can try to log in, and the traffic (the session
WARNING: cookie, job data) is plain HTTP. Prefer the default (127.0.0.1) and an SSH tunnel.
"""


async def _run(
    fd: int,
    url: str,
    hosts: frozenset[str],
    sessions: Sessions,
    client: AsyncClient,
    token_file: Path,
    open_browser: bool,
) -> None:
    config = Config()
    config.bind = [f"fd://{fd}"]
    config.accesslog = None
    config.loglevel = "WARNING"  # the one line above says where it listens
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        web = Web(
            client=client,
            sessions=sessions,
            top=TopFeed(client, nursery),
            changes=ChangeFeed(client, nursery),
            templates=templates(),
            token_file=str(token_file),
        )
        nursery.start_soon(_wait_for_signal, stop)
        await nursery.start(_serve, build(web, hosts), config, stop, nursery.cancel_scope)
        print(f"Semantica web view: {url}", flush=True)
        try:
            await client.status()
        except SemanticaError as exc:
            print(f"semctl web: {exc.message} (pages will say so until it is up)", file=sys.stderr)
        if open_browser:
            nursery.start_soon(_open_browser, url)
        await stop.wait()
        nursery.cancel_scope.deadline = trio.current_time() + 2 * config.graceful_timeout
    await client.aclose()


async def _serve(
    app: object,
    config: Config,
    stop: trio.Event,
    everything: trio.CancelScope,
    task_status: trio.TaskStatus[None],
) -> None:
    """Serve until ``stop``; then end everything else (the shared sources)."""
    await serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]
    stop.set()
    everything.cancel()


async def _open_browser(url: str) -> None:
    if not await trio.to_thread.run_sync(webbrowser.open, url):
        print("semctl web: no browser could be opened: open the URL above", file=sys.stderr)


async def _wait_for_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


def run(
    addr: str,
    open_browser: bool,
    allow_host: list[str],
    home: str | None,
    socket_path: str | None,
) -> None:
    """``semctl web``: raises BadInput (exit 2) before serving; returns when stopped."""
    host, port = parse_addr(addr)
    paths = locate(home=home, socket=socket_path)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    if not is_loopback(host):
        print(WARNING.format(addr=f"{host}:{port}"), file=sys.stderr, end="", flush=True)
    sessions = Sessions(lambda: read_token(paths))
    url = f"http://{url_host(host)}:{port}/login?code={sessions.new_code()}"
    client = AsyncClient(home=home, socket=socket_path)
    hosts = allowed_hosts(host, port, allow_host)
    # hypercorn takes the socket over by its descriptor (and closes it).
    trio.run(_run, sock.detach(), url, hosts, sessions, client, paths.token, open_browser)
