"""What the browser tests stand on: a real ``semctl web``, a headless Chromium, plain HTTP.

:class:`WebView` runs ``semctl web --addr 127.0.0.1:0`` for a supervisor's home and reads
the one line it prints (``Semantica web view: http://127.0.0.1:PORT/login?code=CODE``);
its stderr goes to a file the fixtures show when a test fails. :class:`Browser` is
Debian's headless Chromium driven through Debian's chromedriver (selenium's own
driver and browser downloads are never used: ``Service(executable_path=...)`` and
``binary_location``), with a fresh profile, the browser console collected, and a trap
that records any ``alert``/``confirm``/``prompt`` a page calls instead of opening it.
Waits are selenium's ``WebDriverWait`` on a condition, never sleeps. :func:`request` is
a plain HTTP client for what a browser cannot do (a forged ``Host``, a POST without
the CSRF token). :func:`shot` saves ``docs/images/web-NAME.png`` only when
``SEMANTICA_SCREENSHOTS=1`` (``make screenshots``), so ordinary runs never rewrite
tracked files.

Everything here fails loudly: a missing browser is an error that says how to install
it (``make browsers``), never a skip, since these are the web view's acceptance tests.
"""

from __future__ import annotations

import html.parser
import http.client
import http.cookies
import os
import re
import selectors
import signal
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
DOCS_IMAGES = REPO / "docs" / "images"

#: How long a page may take to show what a test waits for. Generous: two test
#: processes, their supervisors and browsers share two cores.
WAIT = 15.0

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root (CI), Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No traffic of its own (updates, safe browsing lists, sync): nothing here may
    # reach the internet, and a blocked request would only slow the start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--window-size=1280,900",
)

# Run in every page before its own scripts (through the DevTools protocol, which a
# Content-Security-Policy does not restrict): a dialog a page opens is recorded,
# not shown, so a test can ask afterwards whether any script tried.
_DIALOG_TRAP = """
window.__semantica_dialogs = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = function (...args) {
    window.__semantica_dialogs.push(name + "(" + args.map(String).join(", ") + ")");
  };
}
"""

T = TypeVar("T")


def require_browser() -> None:
    """Fail (never skip) when Chromium or its driver is missing, saying how to get them."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise AssertionError(
            f"{' and '.join(missing)} missing: `make browsers` installs Debian's "
            "chromium and chromium-driver (as root)"
        )


class Browser(webdriver.Chrome):
    """A headless Chromium with a fresh profile in ``profile``; its console is kept."""

    def __init__(self, profile: Path) -> None:
        require_browser()
        profile.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in _FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile / 'chromium'}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver_log = profile / "chromedriver.log"
        service = Service(executable_path=CHROMEDRIVER, log_output=str(self.driver_log))
        super().__init__(options=options, service=service)
        self._console: list[dict[str, Any]] = []
        self.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _DIALOG_TRAP})

    def console(self) -> list[dict[str, Any]]:
        """Every console message so far (level, message, source), oldest first."""
        # The driver hands each message out once: keep them for later questions.
        self._console.extend(self.get_log("browser"))
        return list(self._console)

    def console_errors(self) -> list[str]:
        """The console's errors (SEVERE): script errors, CSP violations, failed loads."""
        return [
            e["message"]
            for e in self.console()
            if e["level"] == "SEVERE"
            # The browser asks for /favicon.ico on its own; the page never did.
            and "/favicon.ico" not in e["message"]
        ]

    def dialogs(self) -> list[str]:
        """The dialogs the current page's scripts tried to open, and any open now."""
        tried: list[str] = self.execute_script("return window.__semantica_dialogs || []")
        try:
            tried.append(f"open: {self.switch_to.alert.text}")
        except NoAlertPresentException:
            pass
        return tried

    def path(self) -> str:
        """The current URL's path and query: ``/jobs?state=queued``."""
        url = urllib.parse.urlsplit(self.current_url)
        return url.path + (f"?{url.query}" if url.query else "")

    def report(self) -> str:
        """What a failed test shows about the browser: where it was and what it logged."""
        try:
            lines = [f"at {self.current_url}"]
            lines += [f"{e['level']} {e['source']}: {e['message']}" for e in self.console()]
            tried = self.dialogs()
        except Exception as exc:  # noqa: BLE001  # a report must not hide the failure
            return f"(the browser could not say: {exc!r})"
        if tried:
            lines.append(f"dialogs: {tried}")
        return "\n".join(lines)


def by_testid(name: str) -> tuple[str, str]:
    """The locator of the element with ``data-testid="name"``."""
    return (By.CSS_SELECTOR, f'[data-testid="{name}"]')


def wait_for(
    driver: webdriver.Chrome,
    condition: Callable[[webdriver.Chrome], T],
    timeout: float = WAIT,
    message: str = "",
) -> T:
    """Wait until ``condition(driver)`` is truthy and return it (an event, polled by selenium
    every 50 ms); fail with ``message`` and the page's address after ``timeout``.

    A live update may replace an element the condition holds between two calls: that
    try counts as not yet (prefer :func:`read`, which cannot be caught mid-update)."""
    try:
        return WebDriverWait(
            driver,
            timeout,
            poll_frequency=0.05,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"waited {timeout} s at {driver.current_url}: {message or condition!r}"
        ) from None


def element(driver: webdriver.Chrome, name: str, timeout: float = WAIT) -> WebElement:
    """The element with ``data-testid="name"``, once it is on the page."""
    return wait_for(
        driver,
        lambda d: next(iter(d.find_elements(*by_testid(name))), None),
        timeout,
        f'an element data-testid="{name}"',
    )


@dataclass
class Seen:
    """An element as one script read it: its text, its HTML, the tags of what it holds."""

    text: str
    html: str
    tags: list[str]


# One script reads all of it: the page runs no other script meanwhile, so a live
# update cannot replace the element halfway through (as between selenium calls).
_READ = """
const el = document.querySelector(arguments[0]);
if (!el) { return null; }
return {
  text: el.innerText,
  html: el.innerHTML,
  tags: Array.from(el.querySelectorAll("*"), e => e.tagName.toLowerCase()),
};
"""


def read(driver: webdriver.Chrome, name: str, inner: str = "") -> Seen | None:
    """The element ``data-testid="name"`` (or the CSS selector ``inner`` within it) as it
    is now; None if it is not on the page."""
    selector = f'[data-testid="{name}"]' + (f" {inner}" if inner else "")
    found = driver.execute_script(_READ, selector)
    return None if found is None else Seen(found["text"], found["html"], found["tags"])


def login(driver: Browser, url: str) -> None:
    """Open the one-time login URL and wait until it redirected to the dashboard."""
    driver.get(url)
    wait_for(driver, lambda d: d.path() == "/", message="the login to land on the dashboard")


def shot(driver: webdriver.Chrome, name: str) -> Path | None:
    """Save the page as ``docs/images/web-NAME.png`` for the docs, when
    ``SEMANTICA_SCREENSHOTS=1`` (``make screenshots``); otherwise do nothing."""
    if os.environ.get("SEMANTICA_SCREENSHOTS") != "1":
        return None
    DOCS_IMAGES.mkdir(exist_ok=True)
    path = DOCS_IMAGES / f"web-{name}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the screenshot {path} was not saved")
    return path


# ---------------------------------------------------------------- semctl web

_BANNER = re.compile(r"^Semantica web view: (http://127\.0\.0\.1:(\d+))/login\?code=(\S+)$")
START_TIMEOUT = 30.0


@dataclass
class WebView:
    """A running ``semctl web`` process: its address, its one-time code, its stderr."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path
    base: str = ""
    port: int = 0
    code: str = ""
    _rest: list[bytes] = field(default_factory=list)

    @classmethod
    def start(cls, semctl: str, env: Mapping[str, str], workdir: Path, *args: str) -> WebView:
        """Start ``semctl web --addr 127.0.0.1:0 ARGS`` and wait for its line on stdout."""
        stderr_path = workdir / "semctl-web.stderr"
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [semctl, "web", "--addr", "127.0.0.1:0", *args],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        web = cls(proc, stderr_path)
        try:
            line = web._first_line()
            found = _BANNER.match(line)
            if not found:
                raise AssertionError(f"semctl web printed {line!r}, not its login line")
        except BaseException:
            web.kill()
            raise
        web.base, web.port, web.code = found[1], int(found[2]), found[3]
        # Anything more on stdout is read (and kept), so a chatty process never blocks.
        threading.Thread(target=web._drain, daemon=True).start()
        return web

    def _first_line(self) -> str:
        assert self.proc.stdout is not None
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                if not sel.select(START_TIMEOUT):
                    raise AssertionError(
                        f"semctl web printed no line within {START_TIMEOUT} s:\n{self.stderr()}"
                    )
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError(
                        f"semctl web exited ({self.proc.wait()}) before its line:\n{self.stderr()}"
                    )
                buf += chunk
        line, _, rest = buf.partition(b"\n")
        self._rest.append(rest)
        return line.decode()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            self._rest.append(chunk)

    @property
    def login_url(self) -> str:
        return f"{self.base}/login?code={self.code}"

    def url(self, path: str) -> str:
        return self.base + path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, and its exit status (it must stop cleanly: 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"semctl web still ran {timeout} s after SIGTERM:\n{self.stderr()}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# ---------------------------------------------------------------- plain HTTP


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: str

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def request(
    port: int,
    method: str,
    path: str,
    *,
    host: str | None = None,
    cookie: str | None = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request to 127.0.0.1:PORT, redirects not followed. ``host`` replaces the
    ``Host`` header (default ``127.0.0.1:PORT``); ``cookie`` is the session's value;
    ``form`` is sent urlencoded."""
    sent = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
    if cookie is not None:
        sent["Cookie"] = f"semantica_session={cookie}"
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request(method, path, body=body, headers=sent)
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read().decode(errors="replace"))
    finally:
        conn.close()


def session_cookie(reply: Reply) -> str | None:
    """The value of the ``semantica_session`` cookie a reply sets, if it sets one."""
    for header in reply.headers.get_all("Set-Cookie") or []:
        jar = http.cookies.SimpleCookie(header)
        if "semantica_session" in jar:
            return jar["semantica_session"].value
    return None


def http_login(web: WebView) -> str:
    """Log in with the one-time code over plain HTTP: the session cookie's value."""
    reply = request(web.port, "GET", f"/login?code={web.code}")
    cookie = session_cookie(reply)
    assert reply.status == 303 and cookie, f"the login URL answered {reply.status}: {reply.body}"
    return cookie


class _CsrfField(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("name") == "csrf" and self.value is None:
            self.value = fields.get("value")


def csrf_of(page: str) -> str:
    """The CSRF token of the first form on a page (the ``csrf`` field's value)."""
    parser = _CsrfField()
    parser.feed(page)
    assert parser.value, "no csrf field on the page"
    return parser.value
