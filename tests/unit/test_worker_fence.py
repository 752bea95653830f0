"""The worker's fence (semantica/worker/fence.py): a job runs only while renewed."""

from __future__ import annotations

import threading
import time

from semantica.worker.fence import EXIT_FENCED, Fence


class Ends:
    """What the fence did: the processes it ended, and how it exited."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.exited = threading.Event()
        self.status: int | None = None

    def end_all(self) -> None:
        self.calls.append("end_all")

    def exit(self, status: int) -> None:
        self.calls.append("exit")
        self.status = status
        self.exited.set()


def test_a_busy_worker_not_renewed_in_time_kills_its_job_then_exits() -> None:
    ends = Ends()
    fence = Fence(busy=lambda: True, end_all=ends.end_all, exit=ends.exit)
    started = time.monotonic()
    fence.hold_until(0.05)
    assert ends.exited.wait(5)
    assert time.monotonic() - started >= 0.05
    assert ends.calls == ["end_all", "exit"]  # its processes first, then itself
    assert ends.status == EXIT_FENCED


def test_renewals_keep_the_job_running() -> None:
    ends = Ends()
    fence = Fence(busy=lambda: True, end_all=ends.end_all, exit=ends.exit)
    fence.hold_until(0.2)
    for _ in range(5):  # 0.5 s in all, renewed every 0.1 s
        time.sleep(0.1)
        fence.hold_until(0.2)
    assert not ends.exited.is_set()
    assert ends.exited.wait(5)  # and once renewals stop, it fences


def test_an_idle_worker_is_not_fenced_until_its_next_job() -> None:
    ends = Ends()
    busy = threading.Event()
    fence = Fence(busy=busy.is_set, end_all=ends.end_all, exit=ends.exit)
    fence.hold_until(0.01)
    assert not ends.exited.wait(0.3)  # the deadline passed with nothing to stop
    busy.set()
    assert not ends.exited.wait(0.1)  # a job came without a deadline of its own: none yet
    fence.hold_until(0.01)  # (a RunJob with lease_for)
    assert ends.exited.wait(5)
