"""Who may use the web view: the one-time login code, sessions, CSRF tokens, flash messages.

Contract:

* A login code is random (32 bytes), printed once by ``semctl web`` in the login URL,
  valid for :data:`CODE_TTL_S` and for one login only: a second use is refused, so a
  URL left in a terminal's scrollback or a shell history is worthless once used.
* The supervisor's control token (its token file) is also accepted, pasted into the
  login form: whoever can read it can already control the supervisor. It is read
  again at each try (a restarted supervisor may have written a new one) and compared
  in constant time, as codes and CSRF tokens are.
* A session is a random cookie value mapped, in this process's memory only, to a
  :class:`Session`; it ends after :data:`IDLE_S` without a request, at logout, or
  when ``semctl web`` stops. At most :data:`MAX_SESSIONS` live at once (the
  least recently used goes first), so logins cannot grow memory without bound.
* Each session has its own CSRF token, which every request that changes something
  must carry (checked by :func:`csrf_ok`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

#: How long the printed login code stays valid, in seconds.
CODE_TTL_S = 15 * 60
#: A session ends after this long without a request.
IDLE_S = 12 * 3600
MAX_SESSIONS = 64
COOKIE = "semantica_session"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass
class Session:
    """One logged-in browser."""

    key: str
    csrf: str
    last_seen: float
    #: Messages for the next page the browser shows ("Cancelled job 12"), each with
    #: its kind: "ok" or "error".
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, message: str, kind: str = "ok") -> None:
        self.flashes.append((kind, message))
        del self.flashes[:-5]  # a few, never a pile

    def take_flashes(self) -> list[tuple[str, str]]:
        flashes, self.flashes = self.flashes, []
        return flashes


class Sessions:
    """The login code and the live sessions of one ``semctl web`` process.

    Args:
        read_token: returns the supervisor's control token now (or raises OSError /
            a SemanticaError when there is none: then only the code logs in).
        now: the clock (monotonic seconds).
    """

    def __init__(
        self, read_token: Callable[[], str], now: Callable[[], float] = time.monotonic
    ) -> None:
        self._read_token = read_token
        self._now = now
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._code: str | None = None
        self._code_expires = 0.0

    def new_code(self) -> str:
        """A fresh one-time login code (the previous one stops working)."""
        self._code = secrets.token_urlsafe(32)
        self._code_expires = self._now() + CODE_TTL_S
        return self._code

    def redeem_code(self, code: str) -> Session | None:
        """A new session for the printed code, once; None for any other code or a second use."""
        expected = self._code
        if expected is None or self._now() > self._code_expires or not _same(code, expected):
            return None
        self._code = None
        return self._open()

    def login_with_token(self, token: str) -> Session | None:
        """A new session for the supervisor's control token; None for anything else."""
        try:
            expected = self._read_token().strip()
        except Exception:  # noqa: BLE001  # no token file: the form cannot log in, the code can
            return None
        if not expected or not _same(token.strip(), expected):
            return None
        return self._open()

    def get(self, key: str | None) -> Session | None:
        """The live session of a cookie value (and it was just used), or None."""
        if not key:
            return None
        session = self._sessions.get(key)
        now = self._now()
        if session is None:
            return None
        if now - session.last_seen > IDLE_S:
            del self._sessions[key]
            return None
        session.last_seen = now
        self._sessions.move_to_end(key)
        return session

    def end(self, key: str | None) -> None:
        if key:
            self._sessions.pop(key, None)

    def _open(self) -> Session:
        session = Session(
            key=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), last_seen=self._now()
        )
        self._sessions[session.key] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session


def csrf_ok(session: Session, given: object) -> bool:
    """Whether a request's CSRF field is this session's token."""
    return isinstance(given, str) and _same(given, session.csrf)
