"""A running command's stdout, read line by line with a deadline on each line.

The lines are read from the pipe's file descriptor into a buffer of our own: a
``select`` on a buffered text stream says nothing about lines Python has already read
ahead, so a line that came in the same chunk as the one before would wait for more
output that never comes (a test that times out although the line was there).
"""

from __future__ import annotations

import os
import select
import subprocess
import time


class Lines:
    """``argv`` started with its stdout on a pipe; :meth:`poll` gives the next line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.ended = False

    def next(self, timeout: float = 15) -> str:
        line = self.poll(timeout)
        assert line is not None, f"no line came within {timeout} s"
        return line

    def poll(self, timeout: float) -> str | None:
        """The next line (without its newline), or None if none came within ``timeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            assert not self.ended, f"the output ended; last: {self.buffer!r}"
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 1 << 16)
            self.ended = not chunk
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
