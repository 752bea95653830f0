"""The first thing every request meets: the ``Host`` check and the security headers.

Contract (an ASGI middleware around the whole app, HTTP only):

* **Host.** A request whose ``Host`` header is not one of the names the view was
  told it is reached by (:func:`allowed_hosts`: the loopback names and the bound
  address, with the port, and ``--allow-host`` names) gets ``400 unknown Host``
  and reaches nothing. A page of another site that rebinds its own name to
  127.0.0.1 (DNS rebinding) sends its own name, so it cannot read the view.
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
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """The middleware: refuses foreign hosts and origins, adds the headers."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or "").lower()
        if host not in self.hosts:
            await _refuse(send, 400, "unknown Host: this view answers only its own address\n")
            return
        origin = _header(scope, b"origin")
        unsafe = scope["method"] not in ("GET", "HEAD")
        if unsafe and origin is not None and origin.lower() != f"http://{host}":
            await _refuse(send, 403, "refused: the request came from another site\n")
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

        await self.app(scope, receive, send_with_headers)


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
