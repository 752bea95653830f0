"""A disk that fills up under a real supervisor, and gives the space back.

Two ways, the same for a test:

* ``tmpfs``: the state directory is on a small tmpfs of its own, filled by a
  file of ours, as when something else fills the disk (needs root and a
  ``mount`` that is allowed where the tests run);
* ``rlimit``: the supervisor's file size limit (``ulimit -f``) is set just
  above its files (needs nothing).

Where a tmpfs cannot be mounted, ``tmpfs`` falls back to ``rlimit`` and prints
so (``FullDisk.kind`` says which ran): the test runs either way, never skipped.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Daemon

from semantica.errors import StoreFull

KINDS = ["rlimit", "tmpfs"]


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root, and allowed where it runs)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(tempfile.mkdtemp(prefix="sem-mount-probe-", dir="/tmp"))
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True
        )
        if mounted.returncode:
            return False
        subprocess.run(["umount", str(probe)], check=True)
        return True
    finally:
        probe.rmdir()


def fill_up(path: Path) -> None:
    """Write ``path`` until its file system has no room left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


class FullDisk:
    """Fills the disk of ``daemon`` (made here, in ``root``) and gives the space back."""

    def __init__(self, wanted: str, root: Path) -> None:
        self.kind = wanted if wanted == "rlimit" or can_mount() else "rlimit"
        if self.kind != wanted:
            print(f"cannot mount a tmpfs here: a file size limit (rlimit) stands in for {wanted}")
        self.mount = root / "disk"
        self.mount.mkdir(mode=0o700)
        if self.kind == "tmpfs":
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(self.mount)],
                check=True,
            )
        self.daemon = Daemon(home=self.mount / "home")
        self.filler = self.mount / "filler"

    def fill(self) -> list[int]:
        """Fill the running supervisor's disk up: enqueue padded jobs (into a paused
        queue) until the store refuses one with store_full; the ids acknowledged before
        (none, when the disk was full at once)."""
        d = self.daemon
        assert d.proc is not None
        with d.client() as client:
            client.pause("fill")
        if self.kind == "rlimit":
            files = [d.home / "semantica.db", d.home / "semantica.db-wal", d.home / "daemon.log"]
            assert d.output is not None
            limit = max(f.stat().st_size for f in [*files, d.output] if f.exists()) + 64 * 1024
            _soft, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
            resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (limit, hard))
        else:
            fill_up(self.filler)
        acked = []
        with d.client() as client, pytest.raises(StoreFull, match="disk is full"):
            for _ in range(100_000):
                acked.append(client.enqueue("NOOP", {"pad": "x" * 400}, queue="fill").id)
        return acked

    def fill_before_start(self) -> dict[str, object]:
        """Fill the disk for a supervisor not started yet; returns ``subprocess`` keyword
        arguments that start one on it (the file size limit is set in the child)."""
        if self.kind == "tmpfs":
            fill_up(self.filler)
            return {}

        def no_room() -> None:
            # Ignored across the exec, so a write past the limit fails (EFBIG) from the
            # start instead of killing the interpreter before semanticad ignores it itself.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            _soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))

        return {"preexec_fn": no_room}

    def free(self) -> None:
        d = self.daemon
        if self.kind == "rlimit":
            if d.proc is not None and d.proc.poll() is None:
                _soft, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE)
                resource.prlimit(d.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        else:
            self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        alive = self.daemon.stop_for_good()
        if self.kind == "tmpfs":
            subprocess.run(["umount", "-l", str(self.mount)], check=False)
        assert not alive, f"processes left behind: {alive}"


@pytest.fixture(params=KINDS, name="full_disk")
def full_disk_fixture(request: pytest.FixtureRequest, short_tmp: Path) -> Iterator[FullDisk]:
    """A supervisor-to-be whose disk a test can fill (see the module docstring)."""
    disk = FullDisk(request.param, short_tmp)
    try:
        yield disk
    finally:
        disk.close()
