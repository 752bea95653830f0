"""The harness that boots the real supervisor for integration tests.

:class:`Daemon` starts ``python -m semantica.supervisor`` with the handlers in
``semtest_handlers``, waits for systemd's ``READY=1`` on a notify socket of its
own (an event, not a sleep), and runs the real ``semctl``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from semantica import Client

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
SEMCTL = str(BIN / "semctl")
START_TIMEOUT = 30.0


@dataclass
class Result:
    """What a semctl run printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Daemon:
    """A real semanticad in ``home``; restartable."""

    home: Path
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    args: tuple[str, ...] = ()
    start_env: dict[str, str] = field(default_factory=dict)
    output: Path | None = None
    #: The supervisor's stderr: a descriptor (a pipe, say); None: into ``output`` with stdout.
    stderr: int | None = None
    # psutil.Process objects, which refuse to signal a reused pid.
    seen: dict[int, psutil.Process] = field(default_factory=dict)
    #: A command that runs first and execs the supervisor's (given as its last arguments):
    #: ``("sh", "-c", 'setup & exec "$@"', "sh")``, say.
    launcher: tuple[str, ...] = ()

    @property
    def socket(self) -> Path:
        return self.home / "semantica.sock"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["SEMANTICA_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self, *args: str, **env: str) -> None:
        """Start the supervisor and return once it reported READY=1.

        A restart without arguments uses the flags of the last start; ``env`` adds to
        the environment of earlier starts.
        """
        if args:
            self.args = args
        self.start_env.update(env)
        args, env = self.args, self.start_env
        notify_path = self.home.parent / "notify.sock"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(START_TIMEOUT)
        self.starts += 1
        self.output = self.home.parent / f"semanticad.{self.starts}.log"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    *self.launcher,
                    sys.executable,
                    "-m",
                    "semantica.supervisor",
                    "--workers",
                    str(self.workers),
                    "--handlers",
                    "semtest_handlers",
                    *args,
                ],
                env=self.env(NOTIFY_SOCKET=str(notify_path), SEMANTICA_LOG_FORMAT="json", **env),
                stdout=out,
                stderr=subprocess.STDOUT if self.stderr is None else self.stderr,
            )
        try:
            while True:
                try:
                    message = notify.recv(4096).decode()
                except TimeoutError:
                    raise AssertionError(
                        f"no READY=1 within {START_TIMEOUT} s:\n{self.log()}"
                    ) from None
                if "READY=1" in message:
                    break
        finally:
            notify.close()
        self.remember()

    def process_tree(self) -> list[psutil.Process]:
        """The supervisor and every process below it."""
        assert self.proc is not None
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def remember(self) -> None:
        """Note every process of the tree now, to check at the end that all are gone."""
        for p in self.process_tree():
            self.seen.setdefault(p.pid, p)

    def worker_pids(self) -> set[int]:
        return {w["pid"] for w in self.semctl("status", "--json").json()["workers"]}

    def stop_for_good(self) -> list[psutil.Process]:
        """Stop the supervisor if it runs (a second SIGTERM skips the drain), wait
        for every process it ever started to end, and kill and return any still
        alive after 5 s: a test fails on them."""
        if self.proc is not None and self.proc.poll() is None:
            self.remember()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(0.5)
            except subprocess.TimeoutExpired:
                # A job is still running: a second signal skips the drain. (Signals sent
                # back to back may be coalesced into one, hence the wait above.)
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _gone, alive = psutil.wait_procs(list(self.seen.values()), timeout=5)
        alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
        for p in alive:
            p.kill()
        return alive

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the supervisor and wait for it to exit; returns its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.output.read_text() if self.output and self.output.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The supervisor's JSON log lines so far."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def semctl(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        run = subprocess.run(
            [SEMCTL, *args], env=env or self.env(), capture_output=True, text=True, timeout=timeout
        )
        return Result(run.returncode, run.stdout, run.stderr)

    def client(self) -> Client:
        return Client(home=self.home)


class Announcements:
    """A datagram socket that handlers announce themselves on: ``job attempt pid``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout: float = 30.0) -> tuple[int, int, int]:
        self.sock.settimeout(timeout)
        job_id, attempt, pid = self.sock.recv(256).decode().split()
        return int(job_id), int(attempt), int(pid)

    def close(self) -> None:
        self.sock.close()


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def no_zombie(pid: int) -> bool:
    """True if ``pid`` is gone or a zombie of a dead parent (it runs nothing)."""
    p = _process(pid)
    if p is None:
        return True
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


LOCKER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)
    """
)


@contextmanager
def write_locked(db: Path) -> Iterator[float]:
    """Another process holds ``db``'s write lock (BEGIN IMMEDIATE) for the body; yields the
    time it got it. (The only way tests write to a database their supervisor uses.)"""
    with subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as locker:
        assert locker.stdin is not None and locker.stdout is not None
        try:
            assert locker.stdout.readline().strip() == "locked"
            yield time.monotonic()
            locker.stdin.write("\n")
            locker.stdin.flush()
            assert locker.stdout.readline().strip() == "released"
        finally:
            try:
                locker.wait(10)
            except subprocess.TimeoutExpired:
                locker.kill()
                locker.wait()
    assert locker.returncode == 0
