"""``semctl web`` for ``python -m bench.web``: started, logged in, timed over HTTP, listened to.

* :class:`WebView` starts ``semctl web --addr 127.0.0.1:0`` for an engine's state
  directory, reads the one line it prints (``Semantica web view: URL``) and logs in
  with its one-time code (the session cookie is kept);
* :meth:`WebView.timed`: a page's wall time over HTTP, from the request to the last
  byte (a new connection each time, as a browser's first request);
* :class:`Listeners`: ``n`` clients reading a live endpoint (server-sent events), each
  on a thread of its own, as many open browser tabs would, until closed.

Plain ``http.client``: the bench installs nothing more.
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import sys
import threading
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

LINE = re.compile(r"^Semantica web view: (http://127\.0\.0\.1:(\d+)/login\?code=(\S+))$")


class WebView:
    """``semctl web`` for a state directory (``env``: the engine's environment)."""

    def __init__(self, env: dict[str, str]) -> None:
        semctl = str(Path(sys.executable).parent / "semctl")
        self.proc = subprocess.Popen(
            [semctl, "web", "--addr", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().rstrip("\n")
        found = LINE.match(line)
        if found is None:
            self.close()
            raise RuntimeError(f"semctl web printed {line!r}")
        self.port = int(found.group(2))
        self.cookie = ""
        parts = urlsplit(found.group(1))
        status, headers, _ = self.request(f"{parts.path}?{parts.query}")
        jar: SimpleCookie = SimpleCookie()
        jar.load(headers.get("set-cookie", ""))
        if status != 303 or "semantica_session" not in jar:
            self.close()
            raise RuntimeError(f"the login link was refused: {status}")
        self.cookie = f"semantica_session={jar['semantica_session'].value}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def headers(self) -> dict[str, str]:
        sent = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookie:
            sent["Cookie"] = self.cookie
        return sent

    def request(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``path``: (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=self.headers())
            reply = conn.getresponse()
            body = reply.read()
            return reply.status, {k.lower(): v for k, v in reply.getheaders()}, body
        finally:
            conn.close()

    def timed(self, path: str) -> float:
        """Milliseconds of one GET of ``path``, which must answer 200."""
        started = time.perf_counter()
        status, _, body = self.request(path)
        took = 1000 * (time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return took

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> WebView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Listeners:
    """``n`` clients reading ``path`` (server-sent events) until :meth:`close`; how many
    events they read in all."""

    def __init__(self, view: WebView, path: str, n: int) -> None:
        self.events = 0
        self._lock = threading.Lock()
        self._conns: list[http.client.HTTPConnection] = []
        self._threads = [threading.Thread(target=self._read, args=(view, path)) for _ in range(n)]
        self._closing = False
        for thread in self._threads:
            thread.start()

    def _read(self, view: WebView, path: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", view.port, timeout=None)
        with self._lock:
            self._conns.append(conn)
        try:
            conn.request("GET", path, headers={**view.headers(), "Accept": "text/event-stream"})
            reply = conn.getresponse()
            if reply.status != 200:
                raise RuntimeError(f"GET {path}: {reply.status}")
            while True:
                line = reply.readline()
                if not line:
                    return
                if line == b"\n":
                    with self._lock:
                        self.events += 1
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            if not self._closing:
                raise

    def close(self) -> None:
        self._closing = True
        with self._lock:
            for conn in self._conns:
                if conn.sock is not None:
                    try:
                        conn.sock.shutdown(2)
                    except OSError:
                        pass
        for thread in self._threads:
            thread.join(10)

    def __enter__(self) -> Listeners:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
