"""The first thing every request meets: the ``Host`` check and the security headers.

Contract (an ASGI middleware around the whole app, HTTP only):

* **Host.** A request whose ``Host`` header is not one of the names the view was
  told it is reached by (:func:`allowed_hosts`: the loopback names and the bound
  address, with the port, and ``--allow-host`` names) gets ``400 unknown Host``
  and reaches nothing. A page of another site that rebinds its own name to
  127.0.0.1 (DNS rebinding) sends its own name, so it cannot read the view.
* **Users.** Of the users of this machine, the view answers the one who started it
  (and root) only: a connection from another gets ``403`` and reaches nothing,
  whatever cookie or login code it carries (see :mod:`.peers`). A peer the kernel
  does not know as one of its sockets (another machine) is not refused by this.
* **Origin.** A request that may change something (any method but GET and HEAD)
  whose ``Origin`` header names another origin than the one it was sent to gets
  ``403``. (Each such request must also carry its session's CSRF token: checked
  by the pages, see :mod:`.sessions`.)
* **Headers.** Every response carries a Content-Security-Policy that allows
  scripts, styles and connections from the view itself only (no inline script,
  no ``eval``, nothing from elsewhere), and forbids framing; ``nosniff``; a
  referrer for the view's own pages only (``same-origin``: a login URL never leaks to
  another site; ``no-referrer`` would make Chromium send ``Origin: null`` with the
  view's own forms, which the Origin check must refuse); and ``no-store`` (pages hold
  job data).
* **Bodies.** A request body is read only up to a cap (:data:`BODY_MAX`; the login
  form, which anyone who can connect may send, :data:`LOGIN_BODY_MAX`) and only for
  :data:`BODY_S` seconds: more is ``413``, slower is ``408``, and in both cases nothing
  is done. (The form parser would otherwise hold up to a gigabyte of one request in
  memory, and a body sent a byte at a time would hold its connection for ever.)
"""

from __future__ import annotations

from collections.abc import Iterable

import trio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semantica.control.web.peers import allowed, peer_uid

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")

#: The largest body a request may send: the enqueue form with a payload as large as
#: the supervisor takes (a request is at most 1 MiB), percent-encoded.
BODY_MAX = 4 << 20
#: The largest body of ``POST /login``, the one form sent before logging in (a token
#: file holds at most 4 KiB).
LOGIN_BODY_MAX = 16 << 10
#: How long a request may take to send its body.
BODY_S = 30.0

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(bound_host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The ``Host`` values the view answers: each name with ``:port`` (as browsers send
    it), and ``--allow-host`` names as given and with the port."""
    host = f"[{bound_host}]" if ":" in bound_host and not bound_host.startswith("[") else bound_host
    names = {*LOOPBACK_NAMES, host}
    allowed = {f"{name}:{port}".lower() for name in names}
    for name in extra:
        allowed |= {name.lower(), f"{name}:{port}".lower()}
    return frozenset(allowed)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Guard:
    """The middleware: refuses foreign hosts, other users, foreign origins and bodies too
    large or too slow; adds the headers. (``own_user_only`` False: for tests of the rest.)"""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], own_user_only: bool = True) -> None:
        self.app = app
        self.hosts = hosts
        self.own_user_only = own_user_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the view has none: no door left unguarded
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or "").lower()
        if host not in self.hosts:
            await _refuse(send, 400, "unknown Host: this view answers only its own address\n")
            return
        if self.own_user_only and not await _own_user(scope):
            await _refuse(send, 403, "refused: this view answers only the user who started it\n")
            return
        origin = _header(scope, b"origin")
        unsafe = scope["method"] not in ("GET", "HEAD")
        if unsafe and origin is not None and origin.lower() != f"http://{host}":
            await _refuse(send, 403, "refused: the request came from another site\n")
            return
        limit = LOGIN_BODY_MAX if scope.get("path") == "/login" else BODY_MAX
        length = _header(scope, b"content-length")
        if length is not None and (not length.strip().isdigit() or int(length) > limit):
            await _refuse(send, 413, f"refused: a request body is at most {limit} bytes\n")
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers += HEADERS
                if not static:
                    headers.append(NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, _capped(receive, limit), send_with_headers)


async def _own_user(scope: Scope) -> bool:
    """Whether the request comes from the view's own user (or one :mod:`.peers` cannot tell)."""
    client, server = scope.get("client"), scope.get("server")
    if not client or not server or server[1] is None:
        return True
    peer, local = (str(client[0]), int(client[1])), (str(server[0]), int(server[1]))
    return allowed(await trio.to_thread.run_sync(peer_uid, peer, local))


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive`` that ends a body over ``limit`` bytes (413) or slower than BODY_S (408).

    The exceptions reach the app's handlers, which answer them before anything is done
    (a handler reads its form first). Once the body is whole, ``receive`` is left alone:
    a live stream waits on it for the browser to go away.
    """
    deadline = trio.current_time() + BODY_S
    received = 0
    whole = False

    async def receive_capped() -> Message:
        nonlocal received, whole
        if whole:
            return await receive()
        with trio.move_on_at(deadline):
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if received > limit:
                    raise HTTPException(413, f"refused: a request body is at most {limit} bytes")
            return message
        raise HTTPException(408, f"refused: a request body must come within {BODY_S:.0f} s")

    return receive_capped


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
