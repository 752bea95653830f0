"""Reading a web view's server-sent events over plain HTTP, with a deadline on each read.

:func:`open_events` opens ``/live/...`` for a logged-in :class:`~webkit.HttpSession`;
:meth:`Events.next` returns the next event (keepalive comments skipped), or None once
the server closed the stream. A read that takes longer than the timeout fails the test
(a socket timeout), so a test never hangs and never sleeps.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from webkit import HttpSession


@dataclass
class Event:
    name: str  # "message" unless the event said otherwise
    data: str
    id: str | None


class Events:
    """One open ``text/event-stream``."""

    def __init__(self, conn: http.client.HTTPConnection, reply: http.client.HTTPResponse) -> None:
        self.conn = conn
        self.reply = reply
        self.status = reply.status
        self.headers = {k.lower(): v for k, v in reply.getheaders()}

    def next(self) -> Event | None:
        name, data, event_id, seen = "message", [], None, False
        while True:
            raw = self.reply.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if not line:
                if seen:
                    return Event(name, "\n".join(data), event_id)
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            seen = True
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                event_id = value

    def rest(self) -> list[Event]:
        """Every event until the stream ends."""
        events = []
        while (event := self.next()) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_events(user: HttpSession, path: str, timeout: float = 15.0, **headers: str) -> Events:
    """``GET path`` as ``user``, left open to read its events."""
    conn = http.client.HTTPConnection("127.0.0.1", user.port, timeout=timeout)
    sent = {"Host": f"127.0.0.1:{user.port}", "Accept": "text/event-stream", **headers}
    if user.cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in user.cookies.items())
    conn.request("GET", path, headers=sent)
    return Events(conn, conn.getresponse())
