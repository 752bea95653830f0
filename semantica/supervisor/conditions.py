"""Conditions a job can wait for: AC power and an idle CPU.

Conditions defer, they never skip: a job whose condition does not hold stays
QUEUED and starts when it does. :class:`Conditions` keeps the two facts the
scheduler needs (``on_ac``, ``idle``) and samples the machine about once a
second, but only while some queued job asks for a condition; otherwise its
task sleeps on an event and costs nothing.

* Power: ``SEMANTICA_POWER=ac|battery`` decides; ``auto`` asks psutil's battery
  sensor, and a machine without a battery counts as on AC.
* Idle: the CPU use of every process except our own workers (and what they
  started) must stay under ``SEMANTICA_IDLE_CPU`` percent for
  ``SEMANTICA_IDLE_WINDOW`` seconds. Our own jobs do not count, or a busy
  queue would keep itself from ever being idle.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil
import structlog
import trio

from semantica.errors import StoreError
from semantica.supervisor.store_retry import Backoff, retry_store

log = structlog.get_logger("semantica.conditions")

SAMPLE_INTERVAL = 1.0


def read_power(mode: str) -> bool:
    """True when on AC power (or forced so); a machine with no battery is on AC."""
    if mode in ("ac", "battery"):
        return mode == "ac"
    try:
        battery = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):
        return True
    if battery is None or battery.power_plugged is None:
        return True
    return bool(battery.power_plugged)


class CpuMeter:
    """CPU use of the machine minus that of given processes, between two readings."""

    def __init__(self) -> None:
        self._last: tuple[float, float, float] | None = None  # (wall, busy, ours)
        self._procs: dict[int, psutil.Process] = {}

    def _ours(self, pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                for p in (proc, *proc.children(recursive=True)):
                    times = p.cpu_times()
                    total += times.user + times.system
            except psutil.Error:
                self._procs.pop(pid, None)
        return total

    def sample(self, worker_pids: list[int]) -> float | None:
        """Percent of all CPUs used by others since the last call (None on the first)."""
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        now = trio.current_time()
        ours = self._ours(worker_pids)
        last, self._last = self._last, (now, busy, ours)
        self._procs = {pid: p for pid, p in self._procs.items() if pid in worker_pids}
        if last is None or now <= last[0]:
            return None
        elapsed = (now - last[0]) * (psutil.cpu_count() or 1)
        others = max((busy - last[1]) - max(ours - last[2], 0.0), 0.0)
        return min(100.0, 100.0 * others / elapsed)


class Conditions:
    """What the machine is like now, as far as job conditions care."""

    def __init__(
        self,
        power_mode: str,
        idle_cpu: float,
        idle_window: float,
        wanted: Callable[[], tuple[bool, bool]],
        worker_pids: Callable[[], list[int]],
        on_change: Callable[[], None],
    ) -> None:
        self.power_mode = power_mode
        self.idle_cpu = idle_cpu
        self.idle_window = idle_window
        self._wanted = wanted
        self._worker_pids = worker_pids
        self._on_change = on_change
        self.on_ac = read_power(power_mode)
        self.idle = False
        self._idle_since: float | None = None
        self._poke = trio.Event()
        self._meter = CpuMeter()

    def poke(self) -> None:
        """A job with a condition was queued: start sampling if not already."""
        self._poke.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample while queued jobs want a condition; sleep on an event otherwise."""
        task_status.started()
        while True:
            want_power, want_idle = await self._which_wanted()
            if not (want_power or want_idle):
                self._idle_since, self._meter = None, CpuMeter()
                self._poke = trio.Event()
                await self._poke.wait()
                continue
            self._sample(want_power, want_idle)
            await trio.sleep(SAMPLE_INTERVAL)

    async def _which_wanted(self) -> tuple[bool, bool]:
        """Whether queued jobs want power, idle. While the store fails to say, both are
        sampled anyway (it costs little), and it is asked again a sample later."""

        async def ask() -> tuple[bool, bool]:
            return self._wanted()

        async def sample_anyway(delay: float) -> None:
            self._sample(want_power=True, want_idle=True)
            await trio.sleep(delay)

        def warn(exc: StoreError, delay: float) -> None:
            log.warning("store fault in the condition sampler", error=exc.message)

        every_sample = Backoff(SAMPLE_INTERVAL, SAMPLE_INTERVAL)
        return await retry_store(ask, every_sample, wait=sample_anyway, on_retry=warn)

    def _sample(self, want_power: bool, want_idle: bool) -> None:
        """Read what is wanted; tell the scheduler if a condition just became true."""
        became_true = False
        if want_power and self.power_mode == "auto":
            on_ac = read_power(self.power_mode)
            if on_ac != self.on_ac:
                log.info("power source changed", on_ac=on_ac)
                became_true |= on_ac
                self.on_ac = on_ac
        if want_idle:
            became_true |= self._sample_idle()
        if became_true:
            self._on_change()

    def _sample_idle(self) -> bool:
        """Take one CPU reading; True if the machine just became idle."""
        used = self._meter.sample(self._worker_pids())
        if used is None:
            return False
        now = trio.current_time()
        if used >= self.idle_cpu:
            self._idle_since = None
            if self.idle:
                log.info("cpu busy", cpu_percent=round(used, 1))
            self.idle = False
            return False
        if self._idle_since is None:
            self._idle_since = now - SAMPLE_INTERVAL
        if not self.idle and now - self._idle_since >= self.idle_window:
            log.info("cpu idle", cpu_percent=round(used, 1))
            self.idle = True
            return True
        return False
