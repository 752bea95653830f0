"""Handlers the integration tests run in real workers (SEMANTICA_HANDLERS=semtest_handlers).

Handlers that the tests must see start send a datagram ``"<job_id> <attempt> <pid>"``
to the Unix socket named in the payload's ``notify`` key, so tests wait for an
event instead of sleeping.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from semantica import PermanentError, handler


def _announce(ctx: Any, payload: dict[str, Any]) -> None:
    address = payload.get("notify")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{ctx.job_id} {ctx.attempt} {os.getpid()}".encode(), address)


@handler("NOOP")
def noop(ctx: Any, payload: Any) -> None:
    return None


@handler("ADD")
def add(ctx: Any, payload: dict[str, int]) -> dict[str, int]:
    ctx.log("adding", a=payload["a"], b=payload["b"])
    return {"sum": payload["a"] + payload["b"]}


@handler("ASYNC_ADD")
async def async_add(ctx: Any, payload: dict[str, int]) -> dict[str, int]:
    await trio.lowlevel.checkpoint()
    ctx.log("async adding")
    return {"sum": payload["a"] + payload["b"]}


@handler("FAIL")
def fail(ctx: Any, payload: dict[str, str]) -> None:
    raise ValueError(payload.get("message", "boom"))


@handler("PERMANENT")
def permanent(ctx: Any, payload: Any) -> None:
    raise PermanentError("this input can never work")


@handler("WHO")
def who(ctx: Any, payload: Any) -> dict[str, int]:
    time.sleep(0.005)  # a little work, so that both workers get some
    return {"pid": os.getpid()}


@handler("WORK")
def work(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Announce, then work for ``seconds``."""
    _announce(ctx, payload)
    time.sleep(payload.get("seconds", 0.5))
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@handler("HANG_ONCE")
def hang_once(ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """Announce; the first run (marker file absent) hangs forever, later runs return."""
    marker = Path(payload["marker"])
    first = not marker.exists()
    marker.touch()
    _announce(ctx, payload)
    if first:
        threading.Event().wait()
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@handler("HANG")
def hang(ctx: Any, payload: dict[str, Any]) -> None:
    """Announce, then never return."""
    _announce(ctx, payload)
    threading.Event().wait()


@handler("BLOCK_LOOP")
async def block_loop(ctx: Any, payload: dict[str, Any]) -> None:
    """An async handler that wrongly blocks its event loop (the worker cannot answer)."""
    _announce(ctx, payload)
    time.sleep(payload.get("seconds", 60))  # noqa: ASYNC251  # the point of this handler


@handler("ASYNC_HANG")
async def async_hang(ctx: Any, payload: dict[str, Any]) -> None:
    """Announce, then wait forever in trio (cancellable); ``{"hang": false}`` returns at once."""
    _announce(ctx, payload)
    if payload.get("hang", True):
        await trio.sleep_forever()


@handler("COOPERATIVE")
def cooperative(ctx: Any, payload: dict[str, Any]) -> str:
    """Announce, then work until asked to stop (checks ctx.cancelled)."""
    _announce(ctx, payload)
    while not ctx.cancelled:
        time.sleep(0.01)
    return "stopped early"


@handler("STOP_WORDS")
def stop_words(ctx: Any, payload: dict[str, Any]) -> str:
    """Log "ready", announce, then work until asked to stop; then log "saw cancel", write
    the file ``marker`` and return."""
    ctx.log("ready")
    _announce(ctx, payload)
    while not ctx.cancelled:
        time.sleep(0.01)
    ctx.log("saw cancel")
    Path(payload["marker"]).write_text("x")
    return "stopped"


@handler("ASYNC_STOP_WORDS")
async def async_stop_words(ctx: Any, payload: dict[str, Any]) -> None:
    """Log "ready", announce, then wait in trio until cancelled; in a ``finally``, log
    "async finally" and write the file ``marker``."""
    ctx.log("ready")
    _announce(ctx, payload)
    try:
        await trio.sleep_forever()
    finally:
        ctx.log("async finally")
        Path(payload["marker"]).write_text("x")  # noqa: ASYNC240  # (a tiny file, at the end)


@handler("ANNOUNCE_FAIL")
def announce_fail(ctx: Any, payload: dict[str, Any]) -> None:
    """Announce, then fail."""
    _announce(ctx, payload)
    raise ValueError(f"attempt {ctx.attempt} failed")


@handler("LINES")
async def lines(ctx: Any, payload: dict[str, Any]) -> None:
    """Log ``count`` lines; after each, wait for a datagram on ``gate`` (if given)."""
    gate = payload.get("gate")
    sock = None
    if gate:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        await sock.bind(gate)
    try:
        for i in range(payload["count"]):
            ctx.log(f"line {i}")
            if sock is not None:
                await sock.recv(16)
    finally:
        if sock is not None:
            sock.close()
    if payload.get("fail"):
        raise ValueError("failed after its lines")


@handler("POISON")
def poison(ctx: Any, payload: Any) -> None:
    """Kill the worker running it, every time."""
    os._exit(3)


@handler("PROGRESS")
def progress(ctx: Any, payload: dict[str, Any]) -> str:
    """Report progress 0.5 with a message (``message``, default "half way"), announce, then
    wait until told to finish."""
    ctx.progress(0.5, payload.get("message", "half way"))
    _announce(ctx, payload)
    marker = Path(payload["release"])
    while not marker.exists() and not ctx.cancelled:
        time.sleep(0.01)
    return "done"


@handler("[red]MARKUP")
def markup(ctx: Any, payload: Any) -> None:
    """A type that rich would read as markup (types are printable, but may hold brackets)."""
    raise ValueError(payload.get("message", "markup") if isinstance(payload, dict) else "markup")


@handler("FAIL_ONCE")
def fail_once(ctx: Any, payload: dict[str, Any]) -> str:
    """The first attempt fails; a later one announces, then works until ``release`` exists."""
    if ctx.attempt == 1:
        raise ValueError("the first attempt failed")
    _announce(ctx, payload)
    marker = Path(payload["release"])
    while not marker.exists() and not ctx.cancelled:
        time.sleep(0.01)
    return "done"


def _oversized(ctx: Any, payload: dict[str, Any]) -> Any:
    """What BIG and ASYNC_BIG do, as the payload asks: a log line, a progress message,
    an error message or a result of ``n`` bytes, or an error of ``lines`` lines."""
    n = payload.get("n", 0)
    what = payload["what"]
    if what == "log":
        ctx.log("x" * n)
        ctx.log("after the long line")
    elif what == "error":
        raise ValueError("e" * n)
    elif what == "error_lines":
        raise ValueError("".join(f"\nline {i}" for i in range(payload["lines"])))
    elif what == "result":
        return "r" * n
    return "ok"


@handler("BIG")
def big(ctx: Any, payload: dict[str, Any]) -> Any:
    """Produce something oversized (see _oversized). For progress: report it, announce,
    and wait for a datagram on ``gate``."""
    if payload["what"] != "progress":
        return _oversized(ctx, payload)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(payload["gate"])
        ctx.progress(0.5, "p" * payload["n"])
        _announce(ctx, payload)
        sock.recv(16)
    return "ok"


@handler("ASYNC_BIG")
async def async_big(ctx: Any, payload: dict[str, Any]) -> Any:
    """BIG as an async handler."""
    await trio.lowlevel.checkpoint()
    if payload["what"] != "progress":
        return _oversized(ctx, payload)
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(payload["gate"])
        ctx.progress(0.5, "p" * payload["n"])
        _announce(ctx, payload)
        await sock.recv(16)
    return "ok"


# ---------------------------------------------------------------------- processes a job starts
#
# SPAWN and ASYNC_SPAWN start processes the ways handlers do, then end as the payload
# says. Payload: "how" (a list of: system, popen, setsid, double_fork, fork,
# multiprocessing), "pids" (a file each started process appends its own pid to),
# "ignore_term" (they ignore SIGTERM), "notify", "release" (a file: once they have
# started, wait until it exists) and "then": return, fail, wait_cancel,
# ignore_cancel, exit (kills the worker), ignore_sigterm (async only: the worker
# stops heeding SIGTERM).
# (Imports are local: this part was appended to the module.)


def _leaf(payload: dict[str, Any]) -> list[str]:
    """A command that records its pid and sleeps (ignoring SIGTERM if asked)."""
    import shlex

    script = f"echo $$ >> {shlex.quote(payload['pids'])}; exec sleep 300"
    if payload.get("ignore_term"):
        script = "trap '' TERM; " + script
    return ["sh", "-c", script]


def _forked_sleeper(pids: str, ignore_term: bool) -> None:
    """In a forked child: record the pid, then sleep, holding every inherited descriptor."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignore_term else signal.SIG_DFL)
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(300)


def _spawn(payload: dict[str, Any]) -> None:
    import multiprocessing
    import shlex
    import subprocess

    leaf = _leaf(payload)
    ignore_term = bool(payload.get("ignore_term"))
    for how in payload["how"]:
        if how == "system":  # a shell's background job: orphaned when the shell exits
            os.system(shlex.join(leaf) + " &")
        elif how == "popen":  # a child never waited for
            subprocess.Popen(leaf, stdin=subprocess.DEVNULL)
        elif how == "setsid":  # a child in a session of its own
            subprocess.Popen(leaf, stdin=subprocess.DEVNULL, start_new_session=True)
        elif how == "double_fork":  # a daemon: fork, setsid, fork again, the middle one exits
            pid = os.fork()
            if pid == 0:
                try:
                    os.setsid()
                    if os.fork() == 0:
                        os.execvp(leaf[0], leaf)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        elif how == "fork":  # a fork that never execs: it holds all the worker's descriptors
            if os.fork() == 0:
                try:
                    _forked_sleeper(payload["pids"], ignore_term)
                finally:
                    os._exit(0)
        elif how == "multiprocessing":
            context = multiprocessing.get_context("fork")
            context.Process(target=_forked_sleeper, args=(payload["pids"], ignore_term)).start()
        else:
            raise ValueError(f"unknown way to spawn: {how}")
    # Each has recorded its pid before the handler goes on (and may end its worker).
    pids = Path(payload["pids"])
    while len(pids.read_text().split() if pids.exists() else []) < len(payload["how"]):
        time.sleep(0.01)


def _wait_for_release(payload: dict[str, Any]) -> None:
    if payload.get("release"):
        while not Path(payload["release"]).exists():
            time.sleep(0.01)


@handler("SPAWN")
def spawn(ctx: Any, payload: dict[str, Any]) -> str:
    """Start processes (see above), announce, then end as ``then`` says."""
    _spawn(payload)
    _announce(ctx, payload)
    _wait_for_release(payload)
    then = payload.get("then", "return")
    if then == "fail":
        raise ValueError("failed after starting processes")
    if then == "wait_cancel":
        while not ctx.cancelled:
            time.sleep(0.01)
    elif then == "ignore_cancel":
        while True:
            time.sleep(0.01)
    elif then == "exit":
        os._exit(3)
    return str(then)


@handler("ASYNC_SPAWN")
async def async_spawn(ctx: Any, payload: dict[str, Any]) -> str:
    """SPAWN as an ``async def`` handler."""
    import signal

    then = payload.get("then", "return")
    if then == "ignore_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # (async handlers run in the main thread)
    _spawn(payload)
    _announce(ctx, payload)
    await trio.to_thread.run_sync(_wait_for_release, payload)
    if then == "fail":
        raise ValueError("failed after starting processes")
    if then == "wait_cancel":
        await trio.sleep_forever()
    elif then == "ignore_cancel":
        with trio.CancelScope(shield=True):
            await trio.sleep(300)
    elif then == "ignore_sigterm":
        await trio.sleep_forever()
    elif then == "exit":
        os._exit(3)
    return str(then)


@handler("CHANNEL_HOLDERS")
def channel_holders(ctx: Any, payload: dict[str, Any]) -> list[str]:
    """Start a command in the background with os.system; return the sockets of this
    worker (its channel to the supervisor, above all) that the command holds."""
    import shlex

    def sockets(pid: int | str) -> set[str]:
        found = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:"):
                found.add(link)
        return found

    mine = sockets("self")
    os.system(shlex.join(_leaf(payload)) + " &")
    pids = Path(payload["pids"])
    while not pids.exists() or not pids.read_text().strip():
        time.sleep(0.01)
    return sorted(mine & sockets(pids.read_text().split()[0]))


@handler("PRINT")
def print_lots(ctx: Any, payload: dict[str, Any]) -> str:
    """Write ``n`` bytes to stdout and to stderr, as a chatty handler's print() does, and
    end with a line saying so."""
    import sys

    chunk = "o" * 1023 + "\n"
    for _ in range(payload["n"] // 1024):
        sys.stdout.write(chunk)
        sys.stderr.write(chunk.replace("o", "e"))
    print(f"printed {payload['n']} bytes", flush=True)
    return "printed"


@handler("TICKS")
def ticks(ctx: Any, payload: dict[str, Any]) -> str:
    """Announce, then append ``job attempt pid monotonic-time`` to the file ``ledger``
    every 20 ms for ``seconds`` (until stopped): the ticks show when a copy of the job
    was really running, whatever the supervisors believed."""
    _announce(ctx, payload)
    end = time.monotonic() + float(payload.get("seconds", 1.0))
    fd = os.open(payload["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        while time.monotonic() < end and not ctx.cancelled:
            line = f"{ctx.job_id} {ctx.attempt} {os.getpid()} {time.monotonic():.4f}\n"
            os.write(fd, line.encode())
            time.sleep(0.02)
    finally:
        os.close(fd)
    return "ticked"
