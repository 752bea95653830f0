"""``semanticad --metrics-addr HOST:PORT``: the metrics on ``/metrics`` for a Prometheus scraper.

A deliberately tiny HTTP server: it answers ``GET /metrics`` (another method
there is 405, anything else 404),
reads at most 8 KiB of request head within 2 s, and closes every connection
after one answer. It listens on loopback unless told otherwise
(``SEMANTICA_METRICS_PUBLIC=1``), since the metrics name job types. There it
answers only requests whose ``Host`` is a loopback name (so that a web page
cannot read them through a browser by DNS rebinding), and it holds at most
``MAX_CONNECTIONS`` connections: more are closed unanswered, so a flood cannot
take the descriptors the control socket and the workers need.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
import trio

from semantica.config import is_loopback
from semantica.errors import ConfigError

log = structlog.get_logger("semantica.metrics")

HEAD_LIMIT = 8192
READ_TIMEOUT = 2.0
#: Connections served at once; a scraper needs one.
MAX_CONNECTIONS = 16
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def serve_metrics(
    host: str,
    port: int,
    text: Callable[[], str],
    *,
    public: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` until cancelled; ``started`` once listening.

    Unless ``public``, a request must name a loopback host in its ``Host`` header.
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
    log.info("serving metrics", url=f"http://{host}:{port}/metrics")
    task_status.started()

    open_connections = 0

    async def answer(stream: trio.SocketStream) -> None:
        nonlocal open_connections
        async with stream:
            if open_connections >= MAX_CONNECTIONS:
                return  # closed unanswered: descriptors are not the flood's to take
            open_connections += 1
            try:
                await serve_one(stream)
            finally:
                open_connections -= 1

    async def serve_one(stream: trio.SocketStream) -> None:
        head = b""
        with trio.move_on_after(READ_TIMEOUT):
            while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
                chunk = await stream.receive_some(HEAD_LIMIT)
                if not chunk:
                    break
                head += chunk
        request_line = head.split(b"\r\n", 1)[0].split()
        method, path = (request_line[0], request_line[1]) if len(request_line) >= 2 else (b"", b"")
        extra = ""
        if not public and not _host_allowed(head):
            body = b"metrics are served to loopback host names only\n"
            status, ctype = "403 Forbidden", "text/plain; charset=utf-8"
        elif path.split(b"?")[0] != b"/metrics":
            body = b"only GET /metrics is served here\n"
            status, ctype = "404 Not Found", "text/plain; charset=utf-8"
        elif method != b"GET":
            body = b"only GET /metrics is served here\n"
            status, ctype = "405 Method Not Allowed", "text/plain; charset=utf-8"
            extra = "Allow: GET\r\n"
        else:
            body = text().encode()
            status, ctype = "200 OK", CONTENT_TYPE
        response = (
            f"HTTP/1.1 {status}\r\n{extra}Content-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        try:
            await stream.send_all(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    await trio.serve_listeners(answer, listeners)


def _host_allowed(head: bytes) -> bool:
    """No ``Host`` header (HTTP/1.0), or one naming a loopback host, with or without port."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"host":
            host = value.strip().decode("latin-1")
            if host.startswith("["):  # [::1]:9100
                host = host[1 : host.find("]")]
            elif host.count(":") == 1:  # 127.0.0.1:9100, localhost:9100
                host = host.partition(":")[0]
            return is_loopback(host)
    return True
