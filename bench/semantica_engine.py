"""Start and stop a real semanticad for a benchmark, in a temporary state directory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Engine:
    """A semanticad with ``workers`` workers and the bench handlers."""

    def __init__(self, workers: int = 2, durability: str = "full") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sem-bench-", dir="/tmp"))
        self.home = self.dir / "home"
        self.workers = workers
        self.durability = durability
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["SEMANTICA_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def __enter__(self) -> Engine:
        notify_path = self.dir / "notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(60)
        env = self.env()
        env.update(NOTIFY_SOCKET=str(notify_path), SEMANTICA_LOG_FORMAT="json")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "semantica.supervisor",
                "--workers",
                str(self.workers),
                "--handlers",
                "bench.handlers",
                "--durability",
                self.durability,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with notify:
            while b"READY=1" not in notify.recv(4096):
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
