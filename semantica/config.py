"""Settings: where the state lives and how the supervisor runs.

Every setting has an environment variable (``SEMANTICA_*``) and a default;
command-line flags override the environment. :func:`locate` resolves only the
paths a client needs (cheap, no validation of daemon settings), and
:meth:`Settings.from_env` resolves everything the supervisor needs, raising
:class:`~semantica.errors.ConfigError` with a one-line reason for a bad value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from semantica.errors import ConfigError

TOKEN_FILE = "token"
SOCKET_FILE = "semantica.sock"
DB_FILE = "semantica.db"
LOCK_FILE = "semanticad.lock"
LOGS_DIR = "logs"

# Linux and macOS limit a Unix socket path (sun_path) to 108 / 104 bytes.
SOCKET_PATH_MAX = 104


# msgspec structs, not dataclasses: `semctl enqueue` loads this module, and
# dataclasses would bring in `inspect` (about 10 ms of its start-up).
class Paths(msgspec.Struct, frozen=True):
    """The files a client and the supervisor agree on."""

    home: Path
    socket: Path

    @property
    def token(self) -> Path:
        return self.home / TOKEN_FILE

    @property
    def db(self) -> Path:
        return self.home / DB_FILE

    @property
    def lock(self) -> Path:
        return self.home / LOCK_FILE

    @property
    def logs(self) -> Path:
        return self.home / LOGS_DIR


def default_home(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/semantica``, else ``~/.local/state/semantica``."""
    xdg = env.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "semantica"
    user_home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return user_home / ".local" / "state" / "semantica"


def locate(
    env: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
    socket: str | os.PathLike[str] | None = None,
) -> Paths:
    """Resolve the state directory and socket from arguments, then the environment."""
    env = os.environ if env is None else env
    home_path = Path(home or env.get("SEMANTICA_HOME") or default_home(env)).expanduser()
    socket_value = socket or env.get("SEMANTICA_SOCKET")
    socket_path = Path(socket_value).expanduser() if socket_value else home_path / SOCKET_FILE
    return Paths(home=home_path.absolute(), socket=socket_path.absolute())


#: The most a token file may hold: a token is one short line (semanticad's is 44 bytes).
TOKEN_FILE_MAX = 4096


def read_token_file(path: Path) -> str:
    """The token in ``path``: its one line of printable UTF-8 text, white space around it
    stripped. Both sides read it this way (the supervisor at start, clients when they
    connect), so a file one of them takes is taken by the other.

    Raises:
        FileNotFoundError, PermissionError: as ``open`` raises them (each side says
            what they mean to it).
        ConfigError: the file cannot be read otherwise (a directory, an I/O error), or
            holds no token (bytes that are not UTF-8, control characters, more than one
            line, nothing, more than TOKEN_FILE_MAX bytes); the one-line message names
            the file and the fix.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(TOKEN_FILE_MAX + 1)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:
        raise ConfigError(_not_a_token(path, f"cannot be read ({exc.strerror or exc})")) from None
    if len(data) > TOKEN_FILE_MAX:
        raise ConfigError(_not_a_token(path, f"is larger than {TOKEN_FILE_MAX} bytes"))
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            _not_a_token(path, "is not text (it holds bytes that are not UTF-8)")
        ) from None
    if not token:
        raise ConfigError(_not_a_token(path, "is empty"))
    if not token.isprintable():
        raise ConfigError(_not_a_token(path, "holds control characters or more than one line"))
    return token


def _not_a_token(path: Path, why: str) -> str:
    # The supervisor keeps its token in memory: a new file takes a restart.
    return f"token file {path} {why}; delete it, then (re)start semanticad, which makes a new one"


LOG_FORMATS = ("json", "pretty")
POWER_MODES = ("auto", "ac", "battery")
DURABILITY_MODES = ("full", "normal")


class Settings(msgspec.Struct, frozen=True):
    """Everything the supervisor is configured with (see the Settings table in README.md)."""

    paths: Paths
    workers: int
    handlers: tuple[str, ...] = ()
    log_format: str | None = None  # None: pretty on a terminal, json otherwise
    drain_timeout: float = 30.0
    power: str = "auto"
    retention_days: float = 30.0
    maintenance_hours: float = 24.0  # how often maintenance runs
    durability: str = "full"
    max_frame: int = 1 << 20
    log_cap_bytes: int = 1 << 20
    cancel_grace: float = 5.0  # a stopped job's time to end before it is killed
    heartbeat_timeout: float = 10.0  # a busy worker silent this long is killed
    idle_cpu: float = 25.0  # --require-idle: other processes' CPU use under this %...
    idle_window: float = 10.0  # ...for this many seconds
    metrics_addr: str | None = None  # HOST:PORT to serve /metrics on, off by default
    metrics_public: bool = False  # allow a metrics address beyond loopback
    store: str | None = None  # a PostgreSQL connection string; None: the SQLite file in home
    node_name: str = ""  # how this supervisor is named among the nodes of a shared store
    node_timeout: float = 10.0  # a node silent this long is declared dead by the others

    @property
    def store_location(self) -> Path | str:
        """What the store is opened from: the connection string, or the SQLite file."""
        return self.store if self.store is not None else self.paths.db

    @property
    def store_shown(self) -> str:
        """The store, for a log line or a status: the SQLite path, or the connection
        string without its password."""
        return str(self.paths.db) if self.store is None else redact_password(self.store)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Build settings from ``flags`` (None means unset) over ``env`` over defaults.

        Raises:
            ConfigError: a value is malformed; the message names the flag or the variable
                that gave it.
        """
        env = os.environ if env is None else env

        def pick(name: str) -> Any:
            value = flags.get(name)
            if value is not None:
                return value
            return env.get("SEMANTICA_" + name.upper()) or None

        def where(name: str) -> str:
            """What set ``name``, for an error: the flag if one did, else the variable."""
            if flags.get(name) is not None:
                return "--" + name.replace("_", "-")
            return "SEMANTICA_" + name.upper()

        paths = locate(env, home=pick("home"), socket=pick("socket"))
        workers = _number(pick("workers"), where("workers"), int, os.cpu_count() or 1, low=1)
        if workers > 256:
            raise ConfigError(f"{where('workers')} must be at most 256, got {workers}")
        handlers_raw = pick("handlers") or ""
        if isinstance(handlers_raw, str):
            handlers = tuple(h.strip() for h in handlers_raw.split(",") if h.strip())
        else:
            handlers = tuple(handlers_raw)
        metrics_public = _flag(pick("metrics_public"), where("metrics_public"))
        metrics_addr = pick("metrics_addr")
        if metrics_addr is not None:
            parse_metrics_addr(metrics_addr, metrics_public)
        store = _store(pick("store"), where("store"))
        # (socket loaded here, for the supervisor: clients use none of its ~3 ms of enums.)
        from socket import gethostname

        node_name = str(pick("node_name") or gethostname())
        if not node_name.isprintable() or len(node_name) > 200:
            raise ConfigError(
                f"{where('node_name')} must be at most 200 printable characters, got {node_name!r}"
            )
        return cls(
            paths=paths,
            workers=workers,
            store=store,
            node_name=node_name,
            node_timeout=_number(
                pick("node_timeout"), where("node_timeout"), float, 10.0, low=1, high=3600
            ),
            handlers=handlers,
            log_format=_choice(pick("log_format"), where("log_format"), LOG_FORMATS, None),
            drain_timeout=_number(
                pick("drain_timeout"), where("drain_timeout"), float, 30.0, low=0
            ),
            power=_choice(pick("power"), where("power"), POWER_MODES, "auto") or "auto",
            retention_days=_number(
                pick("retention_days"),
                where("retention_days"),
                float,
                30.0,
                low=0,
                high=365_000,
            ),
            maintenance_hours=_number(
                pick("maintenance_hours"),
                where("maintenance_hours"),
                float,
                24.0,
                low=0.01,
                high=87_600,
            ),
            durability=_choice(pick("durability"), where("durability"), DURABILITY_MODES, "full")
            or "full",
            max_frame=_number(pick("max_frame"), where("max_frame"), int, 1 << 20, low=1024),
            log_cap_bytes=_number(
                pick("log_cap_bytes"), where("log_cap_bytes"), int, 1 << 20, low=1024
            ),
            cancel_grace=_number(
                pick("cancel_grace"), where("cancel_grace"), float, 5.0, low=0, high=3600
            ),
            heartbeat_timeout=_number(
                pick("heartbeat_timeout"),
                where("heartbeat_timeout"),
                float,
                10.0,
                low=0.1,
                high=86400,
            ),
            idle_cpu=_number(pick("idle_cpu"), where("idle_cpu"), float, 25.0, low=0, high=100),
            metrics_addr=metrics_addr,
            metrics_public=metrics_public,
            idle_window=_number(
                pick("idle_window"), where("idle_window"), float, 10.0, low=0, high=86400
            ),
        )


def _number(
    value: Any, name: str, kind: type, default: Any, low: float, high: float | None = None
) -> Any:
    if value is None:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not number >= low or number != number:  # `!=` catches NaN
        raise ConfigError(f"{name} must be at least {low}, got {value!r}")
    if high is not None and number > high:
        raise ConfigError(f"{name} must be at most {high}, got {value!r}")
    return number


#: What a connection string to PostgreSQL starts with (a libpq URL).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


# Patterns are compiled on first use (re caches them), not at import: `semctl` loads
# this module and uses none of them.
_CONNINFO = r"\s*[A-Za-z_]+\s*="


def is_postgres_location(text: str) -> bool:
    """Whether ``text`` is a PostgreSQL connection string: a ``postgresql://`` or
    ``postgres://`` URL, or libpq's ``key=value`` words (``host=db dbname=jobs``)."""
    return text.strip().startswith(POSTGRES_SCHEMES) or re.match(_CONNINFO, text) is not None


def _store(value: Any, name: str) -> str | None:
    """A PostgreSQL connection string (a ``postgresql://`` URL or libpq's ``key=value``
    words), or None for the SQLite file in the state directory."""
    if value is None:
        return None
    text = str(value).strip()
    if is_postgres_location(text):
        return text
    raise ConfigError(
        f"{name} must be a PostgreSQL connection string (postgresql://USER@HOST/DB), "
        f"got {redact_password(text)!r}; leave it unset for the SQLite file in SEMANTICA_HOME"
    )


_URL_PASSWORD = r"(\w+://[^:/@\s]*):[^@/\s]*@"
_QUERY_PASSWORD = r"([?&]password=)[^&\s]*"
_WORD_PASSWORD = r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&*][^\s&]*)"


def redact_password(conninfo: str) -> str:
    """A connection string (or anything that may hold one) with every password in it
    replaced by ``***``: in a URL's user part or query, or as libpq's ``password=``."""
    text = re.sub(_URL_PASSWORD, r"\1:***@", conninfo)
    text = re.sub(_QUERY_PASSWORD, r"\1***", text)
    return re.sub(_WORD_PASSWORD, r"\1***", text)


def parse_metrics_addr(addr: str, public: bool) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) -> (host, port).

    Raises:
        ConfigError: malformed, or not loopback without ``public``.
    """
    host, sep, port_text = addr.rpartition(":")
    host = host.strip("[]")
    # isdigit() alone takes a superscript two, which int() refuses.
    if (
        not sep
        or not host
        or not (port_text.isascii() and port_text.isdigit())
        or not 0 < int(port_text) < 65536
    ):
        raise ConfigError(f"SEMANTICA_METRICS_ADDR must be HOST:PORT, got {addr!r}")
    if not public and not is_loopback(host):
        raise ConfigError(
            f"metrics on {host} would be visible beyond this machine; "
            "use 127.0.0.1, or set SEMANTICA_METRICS_PUBLIC=1"
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        import ipaddress  # only for the metrics setting: not on semctl's path

        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flag(value: Any, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {value!r}")


def _choice(value: Any, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    if value is None:
        return default
    text = str(value).lower()
    if text not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return text
