"""Handlers the chaos suite runs in real workers (``--handlers chaos_handlers``).

Each handler appends ``"<job_id> <attempt> <pid> start"`` to the ledger file named
in the payload's ``ledger`` key before it works, and ``"... end"`` after, so a
test can tell which attempts ran, on which worker, and which got to their end.
A line is one ``os.write`` on an ``O_APPEND`` descriptor: whole lines, never
interleaved, even with several workers and a worker killed at any moment.
"""

from __future__ import annotations

import os
import time
from typing import Any

import trio

from semantica import handler

_fds: dict[str, int] = {}  # ledger path -> descriptor, kept for the worker's life


def ledger(ctx: Any, payload: Any, what: str) -> None:
    """Append one ledger line for this attempt (nothing if the payload names no ledger)."""
    path = payload.get("ledger") if isinstance(payload, dict) else None
    if not path:
        return
    fd = _fds.get(path)
    if fd is None:
        fd = _fds[path] = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
    os.write(fd, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {what}\n".encode())


@handler("CHAOS_SLEEP")
def chaos_sleep(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """A blocking handler: ledger ``start``, sleep ``seconds``, ledger ``end``."""
    ledger(ctx, payload, "start")
    seconds = payload.get("seconds", 0)
    if seconds:
        time.sleep(seconds)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


@handler("CHAOS_ASYNC")
async def chaos_async(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """An async (trio) handler: ledger ``start``, sleep ``seconds``, ledger ``end``."""
    ledger(ctx, payload, "start")
    seconds = payload.get("seconds", 0)
    if seconds:
        await trio.sleep(seconds)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


@handler("CHAOS_POISON")
def chaos_poison(ctx: Any, payload: dict[str, Any]) -> None:
    """Ledger ``start``, then kill the worker running it (every attempt)."""
    ledger(ctx, payload, "start")
    os._exit(3)


# ---------------------------------------------------------------------- processes a job starts
# (Appended for scenarios_containment; its imports are local.)

#: The ways CHAOS_SPAWN starts processes: a shell's background job, a child in a session
#: of its own, a double-forked daemon, a fork that never execs (it holds every descriptor
#: of its worker, its channel to the supervisor included).
SPAWN_WAYS = ("system", "setsid", "double_fork", "fork_hold")


def _spawn_children(payload: dict[str, Any]) -> None:
    """Start a process each way ``payload["spawn"]`` names; each sleeps 300 s (ignoring
    SIGTERM if ``ignore_term``). They inherit the worker's environment, which names the
    scenario (CHAOS_MARK), so the scenario finds every one of them."""
    import shlex
    import signal
    import subprocess

    ignore_term = bool(payload.get("ignore_term"))
    leaf = ["sh", "-c", ("trap '' TERM; " if ignore_term else "") + "exec sleep 300"]
    for how in payload.get("spawn", ()):
        if how == "system":
            os.system(shlex.join(leaf) + " &")
        elif how == "setsid":
            subprocess.Popen(leaf, stdin=subprocess.DEVNULL, start_new_session=True)
        elif how in ("double_fork", "fork_hold"):
            pid = os.fork()
            if pid == 0:
                try:
                    if how == "fork_hold":
                        sig = signal.SIG_IGN if ignore_term else signal.SIG_DFL
                        signal.signal(signal.SIGTERM, sig)
                        time.sleep(300)
                    else:
                        os.setsid()
                        if os.fork() == 0:
                            os.execvp(leaf[0], leaf)
                finally:
                    os._exit(0)
            if how == "double_fork":
                os.waitpid(pid, 0)


@handler("CHAOS_SPAWN")
def chaos_spawn(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """Ledger ``start``, start processes (``spawn``), then: os._exit if ``exit``; else
    work ``seconds`` (stopping early when cancelled, unless ``stubborn``), ledger ``end``."""
    ledger(ctx, payload, "start")
    _spawn_children(payload)
    if payload.get("exit"):
        os._exit(3)
    until = time.monotonic() + payload.get("seconds", 0)
    while time.monotonic() < until and (payload.get("stubborn") or not ctx.cancelled):
        time.sleep(0.01)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


@handler("CHAOS_ASYNC_SPAWN")
async def chaos_async_spawn(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """CHAOS_SPAWN as an ``async def`` handler (cancelled through trio)."""
    ledger(ctx, payload, "start")
    _spawn_children(payload)
    if payload.get("exit"):
        os._exit(3)
    if payload.get("stubborn"):
        with trio.CancelScope(shield=True):
            await trio.sleep(payload.get("seconds", 0))
    else:
        await trio.sleep(payload.get("seconds", 0))
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}


# ---------------------------------------------------------------------- copies that tick
# (Appended for scenarios_nodes: when did a copy of a job really run.)


@handler("CHAOS_TICKS")
def chaos_ticks(ctx: Any, payload: dict[str, Any]) -> dict[str, int]:
    """Ledger ``start``; then append ``job attempt pid monotonic-time`` to the file ``ticks``
    every 20 ms for ``seconds``, until cancelled or the file ``release`` exists; ledger
    ``end``. The ticks show when a copy of the job was really running, whatever its
    supervisor believed (a frozen copy makes none); the clock is the system's monotonic
    one, the test's too."""
    ledger(ctx, payload, "start")
    until = time.monotonic() + float(payload.get("seconds", 1.0))
    release = payload.get("release") or ""
    fd = os.open(payload["ticks"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while time.monotonic() < until and not ctx.cancelled:
            if release and os.path.exists(release):
                break
            os.write(
                fd, f"{ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.4f}\n".encode()
            )
            time.sleep(0.02)
    finally:
        os.close(fd)
    ledger(ctx, payload, "end")
    return {"pid": os.getpid()}
