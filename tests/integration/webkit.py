"""A real ``semctl web`` for a real supervisor, and a plain HTTP client to talk to it.

:class:`WebView` starts ``semctl web --addr 127.0.0.1:0`` for a :class:`~harness.Daemon`'s
state directory and reads the one line it prints (the login URL: port and code).
:class:`HttpSession` is a cookie-keeping HTTP client on ``http.client`` (what a browser
does, minus the browser): :meth:`HttpSession.login` redeems the code; :meth:`post` sends
a form with the CSRF token of the last page it read, unless told otherwise.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from harness import SEMCTL, Daemon

LINE = re.compile(r"^Semantica web view: (http://127\.0\.0\.1:(\d+)/login\?code=(\S+))$")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FLASH = re.compile(r'<p class="flash ([a-z]+)" role="status" data-testid="flash">([^<]*)</p>')


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def location(self) -> str | None:
        return self.headers.get("location")

    @property
    def flashes(self) -> list[tuple[str, str]]:
        """The flash messages the page shows: (kind: "ok" or "error", text unescaped)."""
        return [(kind, html.unescape(text)) for kind, text in FLASH.findall(self.text)]


@dataclass
class HttpSession:
    """One client of the view: its cookies, the CSRF token of the last page it read."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            sent.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            conn.request(method, path, body=body, headers=sent)
            raw = conn.getresponse()
            text = raw.read().decode()
            got = {k.lower(): v for k, v in raw.getheaders()}
            for value in raw.headers.get_all("set-cookie") or []:
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                for name, morsel in jar.items():
                    if morsel.value:
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
        finally:
            conn.close()
        found = CSRF.search(text)
        if found:
            self.csrf = found.group(1)
        return Response(raw.status, got, text)

    def get(self, path: str, **headers: str) -> Response:
        return self.request("GET", path, headers=headers)

    def live(
        self, path: str, until: Callable[[str], bool] | None = None, timeout: float = 10.0
    ) -> str:
        """The data of the first event a live endpoint sends (a fragment), or of the first
        for which ``until`` holds (within ``timeout``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {"Host": f"127.0.0.1:{self.port}", "Accept": "text/event-stream"}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        deadline = time.monotonic() + timeout
        try:
            conn.request("GET", path, headers=sent)
            raw = conn.getresponse()
            assert raw.status == 200, (raw.status, raw.read())
            assert raw.headers["content-type"].startswith("text/event-stream")
            data: list[str] = []
            seen: list[str] = []
            while time.monotonic() < deadline:
                got = raw.readline()
                assert got, f"the stream ended; events: {seen}"
                line = got.decode().rstrip("\n")
                if line.startswith("data: "):
                    data.append(line[len("data: ") :])
                elif not line and data:
                    event, data = "\n".join(data), []
                    if until is None or until(event):
                        return event
                    seen.append(event)
            raise AssertionError(f"no such event within {timeout} s; events: {seen}")
        finally:
            conn.close()

    def post(
        self, path: str, data: dict[str, str] | None = None, csrf: bool = True, **headers: str
    ) -> Response:
        fields = dict(data or {})
        if csrf:
            if self.csrf is None:
                self.get("/")
            assert self.csrf is not None, "no page with a CSRF token was read"
            fields.setdefault("csrf", self.csrf)
        body = urlencode(fields).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return self.request("POST", path, body=body, headers=headers)

    def login(self, url: str) -> Response:
        parts = urlsplit(url)
        reply = self.get(f"{parts.path}?{parts.query}")
        assert reply.status == 303 and reply.location == "/", reply
        return reply


@dataclass
class WebView:
    """``semctl web`` running for ``daemon``'s state directory."""

    daemon: Daemon
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    port: int = 0
    code: str = ""
    stderr_path: Path | None = None

    def start(self, *args: str) -> None:
        self.stderr_path = self.daemon.home.parent / "semctl-web.err"
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [SEMCTL, "web", "--addr", "127.0.0.1:0", *args],
                env=self.daemon.env(),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().rstrip("\n")
        found = LINE.match(line)
        assert found, f"semctl web printed {line!r}; stderr: {self.stderr()}"
        self.url, self.port, self.code = found.group(1), int(found.group(2)), found.group(3)

    def session(self, login: bool = True) -> HttpSession:
        """A new client; logged in with the printed code (which then is spent)."""
        client = HttpSession(self.port)
        if login:
            client.login(self.url)
        return client

    def stderr(self) -> str:
        return (
            self.stderr_path.read_text() if self.stderr_path and self.stderr_path.exists() else ""
        )

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"semctl web did not stop on SIGTERM: {self.stderr()}") from None


def as_nobody(port: int, path: str, cookie: str = "") -> int:
    """The status another user of this machine (``nobody``) gets for ``GET path``."""
    "127.0.0.1".encode("idna")  # (loads the codec: nobody cannot read this Python's files)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user, then a plain request
        status = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = {"Host": f"127.0.0.1:{port}", **({"Cookie": cookie} if cookie else {})}
            conn.request("GET", path, headers=headers)
            status = conn.getresponse().status
        finally:
            os.write(write, str(status).encode())
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        status = int(got.read() or 0)
    os.waitpid(pid, 0)
    return status
