"""A private, throwaway PostgreSQL server for the tests: initdb and pg_ctl in a temporary directory.

The suite starts one server for the whole run (:class:`PostgresCluster`) and gives
each test that asks a database of its own, created empty (``pg_database`` in
tests/conftest.py). The server listens on a Unix socket in its directory and on
127.0.0.1 at a free port, trusts local connections (no password: nothing else
can reach it), and runs with ``fsync=off``: a test machine's crash is not what
the suite tests, and a commit is still durable across a crash of the server
itself (``synchronous_commit`` stays on), which the chaos suite kills. The
benchmark (bench/pgserver.py) imports this module and asks for a ``durable``
server instead: ``fsync``, ``full_page_writes`` and ``synchronous_commit`` on,
PostgreSQL's own defaults, so that every engine it measures pays for a flush
per commit as it would in production.

The server binaries are found in ``SEMANTICA_PG_BINDIR``, else beside
``pg_config`` on the PATH, else in the newest ``/usr/lib/postgresql/*/bin``
(Debian's and Ubuntu's ``postgresql`` package). Run as root, the server runs as
the ``postgres`` user (PostgreSQL refuses root).

A server that cannot start is an error, with its log: a test that needs it
fails, it is never skipped.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: The database role the tests connect as (made by initdb, a superuser).
ROLE = "semantica"


class ClusterError(RuntimeError):
    """The throwaway PostgreSQL server could not be made or started."""


def find_bindir() -> Path:
    """Where initdb and pg_ctl are (see the module docstring)."""
    wanted = os.environ.get("SEMANTICA_PG_BINDIR")
    if wanted:
        return Path(wanted)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if installed:
        return installed[-1].parent
    raise ClusterError(
        "no PostgreSQL server binaries (initdb, pg_ctl): install them (Debian/Ubuntu: "
        "apt install postgresql; macOS: brew install postgresql@15) or set "
        "SEMANTICA_PG_BINDIR to their directory"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL server in a temporary directory; :meth:`start`, :meth:`stop`."""

    def __init__(self, bindir: Path | None = None, durable: bool = False) -> None:
        self.bindir = bindir or find_bindir()
        self.durable = durable
        self.dir = Path(tempfile.mkdtemp(prefix="semantica-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = _free_port()
        # PostgreSQL will not run as root: then it runs as the postgres user, who
        # must own its directory.
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)

    @property
    def host(self) -> str:
        """The directory of its Unix socket (libpq's ``host`` for a socket)."""
        return str(self.dir)

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string to ``dbname`` over the Unix socket."""
        return f"host={self.host} port={self.port} user={ROLE} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        """The same as a ``postgresql://`` URL over TCP (what a user would give)."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        program = self.bindir / argv[0]
        try:
            return subprocess.run(
                [str(program), *argv[1:]],
                capture_output=True,
                text=True,
                user=self._user,
                cwd=self.dir,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"cannot run {program}: {exc}") from None

    def start(self) -> PostgresCluster:
        """Make the cluster and start its server; return once it takes connections.

        Raises:
            ClusterError: initdb or the server failed (with what they said).
        """
        made = self._run(
            "initdb", "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if made.returncode != 0:
            raise ClusterError(f"initdb failed in {self.dir}:\n{made.stdout}{made.stderr}")
        # In its own configuration file, so that a restart keeps them.
        durability = (
            "fsync = on\nfull_page_writes = on\nsynchronous_commit = on\n"
            if self.durable
            else "fsync = off\nfull_page_writes = off\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                "listen_addresses = '127.0.0.1'\nmax_connections = 200\n" + durability
            )
        started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
        if started.returncode != 0:
            raise ClusterError(
                f"the PostgreSQL server did not start ({self.bindir}):\n"
                f"{started.stdout}{started.stderr}{self.log_tail()}"
            )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: end sessions, clean; ``immediate``: as a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop the server and start it again on the same port and data."""
        self.stop(mode)
        self.start_again()

    def start_again(self) -> None:
        """Start the stopped server again on the same port and data (a restart in two
        steps, for a test that acts while it is down)."""
        started = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
        if started.returncode != 0:
            raise ClusterError(f"the server did not start again:\n{self.log_tail()}")

    def remove(self) -> None:
        """Stop the server if it runs and delete its directory."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        return ""
