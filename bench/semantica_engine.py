"""Start and stop a real semanticad for a benchmark, in a temporary state directory.

:meth:`Engine.start` spawns it and :meth:`Engine.wait_ready` waits for its ``READY=1``
(sd_notify), so that several (the nodes of bench/pg_ours.py) can start at once. A
semanticad that exits before it is ready raises ``RuntimeError`` with its exit status and,
when its stderr is kept (``keep_stderr``), that stderr's tail, rather than a timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60  # seconds


class Engine:
    """A semanticad with ``workers`` workers and the bench handlers, and ``args`` besides.

    ``durability`` None leaves the flag out (the PostgreSQL store has no SQLite synchronous
    setting). ``keep_stderr`` writes stderr to ``semanticad.stderr`` in the temporary
    directory instead of discarding it.
    """

    def __init__(
        self,
        workers: int = 2,
        durability: str | None = "full",
        args: Sequence[str] = (),
        keep_stderr: bool = False,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sem-bench-", dir="/tmp"))
        self.home = self.dir / "home"
        self.workers = workers
        self.durability = durability
        self.args = list(args)
        self.keep_stderr = keep_stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        # The store is the SQLite file in SEMANTICA_HOME unless ``args`` say --store: a
        # SEMANTICA_STORE in the caller's environment must not move the SQLite run.
        env.pop("SEMANTICA_STORE", None)
        env["SEMANTICA_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def start(self) -> None:
        """Spawn semanticad; it is not ready yet (:meth:`wait_ready`)."""
        notify_path = self.dir / "notify.sock"
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(notify_path))
        self._notify.settimeout(0.2)
        env = self.env()
        env.update(NOTIFY_SOCKET=str(notify_path), SEMANTICA_LOG_FORMAT="json")
        argv = [
            sys.executable,
            "-m",
            "semantica.supervisor",
            "--workers",
            str(self.workers),
            "--handlers",
            "bench.handlers",
        ]
        if self.durability is not None:
            argv += ["--durability", self.durability]
        stderr = (
            open(self.dir / "semanticad.stderr", "wb")  # noqa: SIM115 - the child holds it
            if self.keep_stderr
            else subprocess.DEVNULL
        )
        try:
            self.proc = subprocess.Popen(
                [*argv, *self.args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        finally:
            if self.keep_stderr:
                stderr.close()  # type: ignore[union-attr]

    def wait_ready(self) -> None:
        """Block until semanticad says READY=1; raise if it exits or takes too long."""
        assert self.proc is not None and self._notify is not None
        deadline = time.monotonic() + READY_TIMEOUT
        with self._notify:
            while True:
                try:
                    if b"READY=1" in self._notify.recv(4096):
                        return
                except TimeoutError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"semanticad exited {self.proc.returncode} before it was ready"
                        + self._stderr_tail()
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"semanticad not ready after {READY_TIMEOUT} s")

    def _stderr_tail(self) -> str:
        path = self.dir / "semanticad.stderr"
        if not self.keep_stderr or not path.exists():
            return ""
        return ": " + path.read_text(errors="replace").strip()[-1500:]

    def signal_stop(self) -> None:
        """Ask semanticad to stop (SIGTERM), without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Wait for semanticad to stop (killing it after 30 s) and remove its directory."""
        if self.proc is not None:
            self.signal_stop()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Engine:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
