"""What the browser tests stand on: a headless Chromium, and ways to ask it what it shows.

:class:`Browser` is Debian's headless Chromium driven through Debian's chromedriver
(selenium's own driver and browser downloads are never used: ``Service(executable_path=
...)`` and ``binary_location``), with a fresh profile, the browser console collected,
and a trap that records any ``alert``/``confirm``/``prompt`` a page calls instead of
opening it. Waits are selenium's ``WebDriverWait`` on a condition, never sleeps;
:func:`read` takes an element whole in one script, which a live update cannot
interrupt. :func:`shot` saves ``docs/images/web-NAME.png`` only when
``SEMANTICA_SCREENSHOTS=1`` (``make screenshots``), so ordinary runs never rewrite
tracked files. (The real ``semctl web`` the tests talk to is the integration tests'
``webkit.WebView``.)

Everything here fails loudly: a missing browser is an error that says how to install
it (``make browsers``), never a skip, since these are the web view's acceptance tests.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
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
    "--hide-scrollbars",  # a screenshot of a whole page is the window's width, 1280
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
    """A headless Chromium with a fresh profile in ``profile`` (and more command-line
    ``flags``); its console is kept."""

    def __init__(self, profile: Path, *flags: str) -> None:
        require_browser()
        profile.mkdir(parents=True, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in _FLAGS:
            options.add_argument(flag)
        for flag in flags:
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


def click(driver: webdriver.Chrome, name: str, inner: str = "", timeout: float = WAIT) -> None:
    """Click the element ``data-testid="name"`` (or the CSS selector ``inner`` within it).

    A live part redraws itself (its stream's first fragment comes just after the page):
    an element found just before is then gone, and clicking it fails without doing
    anything. Then the new one is found and clicked."""
    selector = f'[data-testid="{name}"]' + (f" {inner}" if inner else "")

    def attempt(d: webdriver.Chrome) -> bool:
        found = d.find_elements(By.CSS_SELECTOR, selector)
        if not found:
            return False
        found[0].click()
        return True

    wait_for(driver, attempt, timeout, f"to click {selector}")


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


def text(driver: webdriver.Chrome, name: str, inner: str = "") -> str | None:
    """The text the element ``data-testid="name"`` (or ``inner`` within it) shows now."""
    seen = read(driver, name, inner)
    return None if seen is None else seen.text


# Run in every page before its own scripts, like the dialog trap: each EventSource the
# page opens is kept with a count of the messages it received, so a test can ask
# whether a live part got an update (and held it) or let go of its stream.
_STREAM_WATCH = """
window.__semantica_streams = [];
const Original = window.EventSource;
window.EventSource = function (url, init) {
  const source = new Original(url, init);
  const seen = { url: String(url), source: source, messages: 0 };
  source.addEventListener("message", function () { seen.messages += 1; });
  window.__semantica_streams.push(seen);
  return source;
};
window.EventSource.prototype = Original.prototype;
"""


def watch_streams(driver: Browser) -> None:
    """Keep every EventSource the pages opened from now on (see :func:`streams`)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _STREAM_WATCH})


@dataclass
class Stream:
    """An EventSource the page opened: its path, whether it is open, messages received."""

    path: str
    open: bool
    messages: int


def streams(driver: webdriver.Chrome, path: str = "") -> list[Stream]:
    """The EventSources the current page opened (those whose path starts with ``path``),
    oldest first; :func:`watch_streams` must have been called before the page loaded."""
    found = driver.execute_script(
        "return (window.__semantica_streams || []).map(s => "
        "({url: s.url, state: s.source.readyState, messages: s.messages}))"
    )
    return [
        Stream(urllib.parse.urlsplit(s["url"]).path or s["url"], s["state"] != 2, s["messages"])
        for s in found
        if (urllib.parse.urlsplit(s["url"]).path or s["url"]).startswith(path)
    ]


def address(port: int, path: str) -> str:
    """The URL of ``path`` on the web view listening on ``port``."""
    return f"http://127.0.0.1:{port}{path}"


def login(driver: Browser, url: str) -> None:
    """Open the one-time login URL and wait until it redirected to the dashboard."""
    driver.get(url)
    wait_for(driver, lambda d: d.path() == "/", message="the login to land on the dashboard")


def shot(driver: webdriver.Chrome, name: str, whole: bool = False) -> Path | None:
    """Save the page as ``docs/images/web-NAME.png`` for the docs, when
    ``SEMANTICA_SCREENSHOTS=1`` (``make screenshots``); otherwise do nothing.

    The window's view (1280 wide), or with ``whole`` the whole page however long; in
    the light theme."""
    if os.environ.get("SEMANTICA_SCREENSHOTS") != "1":
        return None
    DOCS_IMAGES.mkdir(exist_ok=True)
    path = DOCS_IMAGES / f"web-{name}.png"
    # The docs show the light theme, whatever the machine's preference.
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "light"}]},
    )
    if whole:
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        png = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path.write_bytes(base64.b64decode(png["data"]))
    elif not driver.save_screenshot(str(path)):
        raise AssertionError(f"the screenshot {path} was not saved")
    return path


# ---------------------------------------------------------------- another site


class _Files(http.server.SimpleHTTPRequestHandler):
    headers_to_add: Mapping[str, str] = {}

    def end_headers(self) -> None:
        for name, value in self.headers_to_add.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def site(
    root: Path, files: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> Iterator[int]:
    """Serve ``files`` (name: text) from ``root`` on a free loopback port, which it yields:
    a page that is not the web view's (another site's, or a stand-in), with ``headers``
    on every response."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    handler = type("Files", (_Files,), {"headers_to_add": dict(headers or {})})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
