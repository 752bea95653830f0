"""The supervisor never waits on what it does not own: its stderr's reader, one huge request.

Each test starts the real supervisor and measures what another client would
notice: how long its requests take while something tries to hold the loop.
"""

from __future__ import annotations

import os
import select
import time
from pathlib import Path

from harness import Daemon

#: Jobs whose start and end lines make far more log than a pipe holds (64 KiB).
LOG_JOBS = 3000
#: A request that takes longer than this counts as stalled (a generous bound: a
#: semctl process starts in a fraction of it, even on a loaded machine).
STATUS_LIMIT_S = 5.0


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """Read ``fd`` until ``needle`` has come by (or EOF); everything read."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen within {timeout} s; last: {data[-300:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    return data


def test_an_unread_stderr_pipe_does_not_stall_the_supervisor(short_tmp: Path) -> None:
    """stderr is a pipe nobody reads (a paused `less`): requests are still answered at once
    and jobs run; daemon.log keeps every line; once the pipe is read again, one line says
    how many lines stderr missed, and the metric counts them."""
    read_end, write_end = os.pipe()
    d = Daemon(home=short_tmp / "home", stderr=write_end)
    try:
        d.start()
        os.close(write_end)  # the supervisor has its copy; nobody reads read_end
        write_end = -1
        with d.client() as client:
            ids = [job.id for job in client.enqueue_many([{"type": "NOOP"}] * LOG_JOBS)]
        slowest = 0.0
        deadline = time.monotonic() + 120
        while True:
            began = time.monotonic()
            status = d.semctl("status", "--json", timeout=STATUS_LIMIT_S * 2)
            slowest = max(slowest, time.monotonic() - began)
            assert status.code == 0, status.err
            if status.json()["counts"]["DONE"] == len(ids):
                break
            assert time.monotonic() < deadline, f"jobs did not finish: {status.out}"
            time.sleep(0.2)
        assert slowest < STATUS_LIMIT_S, f"semctl status took {slowest:.2f} s"
        daemon_log = (d.home / "daemon.log").read_text()
        assert daemon_log.count('"event":"job done"') == LOG_JOBS  # the file has every line
        assert len(daemon_log) > 8 * 65536
        metrics = d.semctl("metrics", "--json")
        assert metrics.code == 0, metrics.err
        [dropped] = metrics.json()["semantica_log_lines_dropped"]["samples"]
        assert dropped["value"] > 0
        # The reader comes back: what was queued comes out, then the count of the rest.
        seen = _read_until(read_end, b"log lines dropped", timeout=30)
        assert b'"event":"ready"' in seen
    finally:
        if write_end >= 0:
            os.close(write_end)
        os.close(read_end)  # a supervisor blocked on the pipe gets EPIPE and goes on
        alive = d.stop_for_good()
    assert not alive, f"processes left behind: {alive}"
