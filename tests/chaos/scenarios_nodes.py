"""Chaos with three nodes (2 workers each) on one PostgreSQL database, under load.

One node (the victim, ``n1``) is killed, frozen or cut off from the database while
the others serve a load of short ledger jobs and a few ``CHAOS_TICKS`` jobs, one of
which surely runs on the victim. Each scenario measures and asserts, with ``T`` the
node timeout (supervisor/cluster.py states the promises):

* every acknowledged job ends DONE;
* the victim's TICKS job runs again on another node within ``T`` + 1 s of the event
  (from the event to the first tick of the new copy);
* no two copies of one job ran at once (the ticks; a frozen or cut-off node's copy
  may tick for the ``window`` between its waking and its fence, measured);
* no job's run is recorded complete twice in the ledger, except a copy of the victim
  that finished in that window, whose report was refused (the job's result is the
  other copy's).

:func:`db_restart` restarts the PostgreSQL server under load instead: nothing
acknowledged is lost, every node serves again without a restart of its own, and
meanwhile clients get ``store_unavailable`` at once.

Each returns its one-line summary with the timings measured.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from chaos_ledger import Ledger
from chaos_scenarios import events, job_spec
from harness import Daemon
from invariants import wait_all
from nodes_kit import Load, MakeDaemon, Ticks, signal_tree, start_node, ticks_job, tree_pids
from pgcluster import ROLE, PostgresCluster
from tcpproxy import proxy_to

from semantica.errors import EXIT_JOB_FAILED
from semantica.models import JobState

#: How long after the event the victim's copy may still run (its fence's delay).
WINDOW_S = 0.25
#: How long the TICKS jobs run on after the victim is back, before they are released.
RUN_ON_S = 1.0


@dataclass
class Stage:
    """Three nodes under load, the victim running a TICKS job."""

    nodes: list[Daemon]  # the victim first
    ledger: Ledger
    ticks: Ticks
    load: Load
    acked: list[int]  # the batch and the TICKS jobs (the load keeps its own)
    target: int  # the TICKS job running on the victim
    target_pid: int
    began: float


def stage(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    stores: tuple[str, str],
    *,
    timeout: float,
    jobs: int,
    seed: int,
    pace: float,
) -> Stage:
    """Start the victim on ``stores[0]`` and a TICKS job on it (it is alone), then the
    others on ``stores[1]``, two more TICKS jobs, ``jobs`` short ones and the load."""
    began = time.monotonic()
    rng = random.Random(seed)
    ticks = Ticks(ledger_path.with_name("ticks"))
    victim = start_node(make_daemon, ledger_path.parent, stores[0], "n1", timeout)
    with victim.client() as client:
        spec = ticks_job(ledger_path, ticks.path)
        target = client.enqueue(spec.pop("type"), spec.pop("payload"), **spec).id
    ticks.wait_for(lambda t: bool(t.pids(target)), 10, "the victim's TICKS job")
    (target_pid,) = ticks.pids(target)
    nodes = [victim] + [
        start_node(make_daemon, ledger_path.parent, stores[1], f"n{i}", timeout) for i in (2, 3)
    ]
    batch = [ticks_job(ledger_path, ticks.path) for _ in range(2)]
    batch += [job_spec(rng, ledger_path, (0.01, 0.1)) for _ in range(jobs)]
    with nodes[1].client() as client:
        acked = [target] + [job.id for job in client.enqueue_many(batch)]
    load = Load(nodes[1], ledger_path, seed=rng.randrange(1 << 30), pace=pace)
    load.start()
    ledger = Ledger(ledger_path)
    victim_pids = tree_pids(victim)
    ledger.wait_for(
        lambda lg: any(e.pid in victim_pids and e.job != target for e in lg.entries),
        timeout=20,
        what="the victim running short jobs too",
    )
    # (Nothing has happened yet: a node that fenced itself here, its database reachable,
    # would be a defect; its job would run again on itself.)
    assert not events(victim, "killed this node's running jobs"), "the victim fenced itself"
    assert ticks.read().pids(target) == {target_pid}
    return Stage(nodes, ledger, ticks, load, acked, target, target_pid, began)


def rerun_after(st: Stage, at: float, timeout: float) -> tuple[int, float]:
    """Wait for the victim's TICKS job to tick on another node: (its pid, seconds from
    ``at`` to its first tick)."""
    ticks = st.ticks.wait_for(
        lambda t: bool(t.pids(st.target) - {st.target_pid}), timeout + 15, "the re-run"
    )
    (pid,) = ticks.pids(st.target) - {st.target_pid}
    assert pid not in tree_pids(st.nodes[0]), "the victim's job ran again on the victim"
    return pid, ticks.first_tick(st.target, pid) - at


@dataclass
class Finish:
    """What :func:`finish` checked."""

    jobs: int
    doubles: int  # jobs whose run was recorded complete twice (a refused late copy)
    overlap: float
    reruns: int  # jobs started more than once


def finish(st: Stage, victim_pids: set[int], window: float, wait_s: float = 180) -> Finish:
    """Release the TICKS jobs, stop the load; every acknowledged job DONE; ledger and ticks
    checked."""
    st.ticks.release()
    acked = st.acked + st.load.stop()
    with st.nodes[1].client() as client:
        jobs = wait_all(client, acked, timeout=wait_s)
    not_done = {j.id: j.state for j in jobs.values() if j.state != JobState.DONE}
    assert not not_done, f"acknowledged jobs not DONE: {list(not_done.items())[:10]}"
    ledger = st.ledger.read()
    ends = Counter(e.job for e in ledger.entries if e.what == "end")
    doubles = [job for job, n in ends.items() if n > 1]
    for job in doubles:
        ended = [e.pid for e in ledger.entries if e.job == job and e.what == "end"]
        late = [pid for pid in ended if pid in victim_pids]
        assert len(ended) == 2 and len(late) == 1, f"job {job} ran to its end {ended}"
        result = jobs[job].result
        assert isinstance(result, dict) and result["pid"] != late[0], (
            f"job {job}: the late copy's report was taken ({result})"
        )
    missing = [job for job in acked if not ends.get(job)]
    assert not missing, f"DONE without a complete run in the ledger: {missing[:10]}"
    overlap = st.ticks.read().overlap()
    assert overlap <= window, f"two copies of a job ran at once for {overlap:.3f} s"
    reruns = sum(1 for starts in ledger.starts.values() if len(starts) > 1)
    return Finish(len(acked), len(doubles), overlap, reruns)


def node_killed(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    dsn: str,
    *,
    timeout: float,
    jobs: int,
    pace: float = 0.01,
) -> str:
    """SIGKILL the victim's whole process tree (a host dying) under load."""
    st = stage(make_daemon, ledger_path, (dsn, dsn), timeout=timeout, jobs=jobs, seed=1, pace=pace)
    victim = st.nodes[0]
    procs = victim.process_tree()
    signal_tree(procs, psutil.Process.kill)
    at = time.monotonic()
    _, rerun = rerun_after(st, at, timeout)
    assert rerun <= timeout + 1.0, f"ran again {rerun:.2f} s after the kill"
    # (A job may have ended on the victim a moment before the kill, its report not yet
    # committed: it runs again, and the ledger shows two ends, the victim's not taken.)
    done = finish(st, {p.pid for p in procs}, window=0.0)
    with st.nodes[1].client() as client:
        states = {n.name: n.state for n in client.status().nodes}
    assert states["n1"] == "dead", states
    return (
        f"node SIGKILLed: T={timeout}s jobs={done.jobs} re-run after {rerun:.2f}s "
        f"(limit {timeout + 1.0:.1f}) re-started={done.reruns} "
        f"ended on the victim unrecorded, ran again={done.doubles} "
        f"overlap={done.overlap:.3f}s lost=0 time={time.monotonic() - st.began:.1f}s"
    )


def after_event(st: Stage, victim_pids: set[int], at: float) -> float:
    """The longest a victim's copy (of any TICKS job) ticked after ``at``: its window."""
    ticks = st.ticks.read()
    worst = 0.0
    for job, pids in ticks.copies.items():
        for pid in set(pids) & victim_pids:
            worst = max(worst, max((t - at for t in ticks.copies[job][pid]), default=0.0))
    return worst


def node_stopped(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    dsn: str,
    *,
    timeout: float,
    jobs: int,
    pace: float = 0.01,
    window: float = WINDOW_S,
) -> str:
    """SIGSTOP the victim's whole process tree (a VM pause) for T + 2 s, then SIGCONT."""
    st = stage(make_daemon, ledger_path, (dsn, dsn), timeout=timeout, jobs=jobs, seed=2, pace=pace)
    victim = st.nodes[0]
    procs = victim.process_tree()
    signal_tree(procs, psutil.Process.suspend)
    at = time.monotonic()
    try:
        _, rerun = rerun_after(st, at, timeout)
        assert rerun <= timeout + 1.0, f"ran again {rerun:.2f} s after the stop"
        time.sleep(max(0.0, at + timeout + 2.0 - time.monotonic()))
    finally:  # (a failure above must not leave the node frozen for the clean-up)
        signal_tree(procs[1:] + procs[:1], psutil.Process.resume)  # (workers first: the worst)
    resumed = time.monotonic()
    wait_rejoined(st, victim)
    time.sleep(RUN_ON_S)  # (the copies run on: one the fence missed would overlap)
    victim_pids = {p.pid for p in procs}
    done = finish(st, victim_pids, window=window)
    stale = len(events(victim, "stale report ignored"))
    late = after_event(st, victim_pids, resumed)
    assert late <= window, f"the frozen node's copy ticked {late:.3f} s after SIGCONT"
    fenced = events(victim, "killed this node's running jobs")
    assert fenced, "the frozen node did not fence its jobs"
    return (
        f"node SIGSTOPped {resumed - at:.1f}s: T={timeout}s "
        f"jobs={done.jobs} re-run after {rerun:.2f}s, after SIGCONT its copies ticked "
        f"for {late * 1000:.1f}ms before the fence, overlap={done.overlap:.3f}s "
        f"late reports refused={stale} done twice={done.doubles} re-started={done.reruns} "
        f"lost=0 time={time.monotonic() - st.began:.1f}s"
    )


def wait_rejoined(st: Stage, victim: Daemon, timeout: float = 20) -> None:
    """Wait until the victim has joined again as a new node, alive for the others."""
    deadline = time.monotonic() + timeout
    while True:
        with st.nodes[1].client() as client:
            nodes = client.status().nodes
        alive = sorted(n.name for n in nodes if n.state == "alive")
        if len(events(victim, "joined")) >= 2 and alive == ["n1", "n2", "n3"]:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the victim did not join again: {[(n.id, n.name, n.state) for n in nodes]}\n"
                + victim.log()[-4000:]
            )
        time.sleep(0.05)


def node_cut_off(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    cluster: PostgresCluster,
    dsn: str,
    *,
    timeout: float,
    jobs: int,
    pace: float = 0.01,
) -> str:
    """Cut the victim off the database (a TCP proxy that stops forwarding) for T + 2 s,
    then heal: its jobs ran elsewhere, no two copies at once, and it rejoins as a new
    node and runs jobs again."""
    dbname = dsn.rsplit("dbname=", 1)[1]
    with proxy_to("127.0.0.1", cluster.port) as proxy:
        proxied = f"host=127.0.0.1 port={proxy.port} user={ROLE} dbname={dbname}"
        st = stage(
            make_daemon,
            ledger_path,
            (proxied, dsn),
            timeout=timeout,
            jobs=jobs,
            seed=3,
            pace=pace,
        )
        victim = st.nodes[0]
        before = tree_pids(victim)
        proxy.cut()
        at = time.monotonic()
        _, rerun = rerun_after(st, at, timeout)
        assert rerun <= timeout + 1.0, f"ran again {rerun:.2f} s after the cut"
        fence = st.ticks.read().last_tick(st.target, st.target_pid) - at
        time.sleep(max(0.0, at + timeout + 2.0 - time.monotonic()))
        proxy.heal()
        healed = time.monotonic()
        wait_rejoined(st, victim)
        mark = len(st.ledger.read().entries)
        st.ledger.wait_for(
            lambda lg: any(e.pid in tree_pids(victim) for e in lg.entries[mark:]),
            timeout=20,
            what="the victim running jobs again",
        )
        back = time.monotonic() - healed
        time.sleep(RUN_ON_S)  # (as in node_stopped)
        done = finish(st, before, window=0.0)
        stale = len(events(victim, "stale report ignored"))
    return (
        f"node cut off {healed - at:.1f}s: T={timeout}s jobs={done.jobs} its copy stopped "
        f"{fence:.2f}s after the cut (fence), re-run after {rerun:.2f}s, "
        f"overlap={done.overlap:.3f}s; healed: rejoined and ran jobs again after {back:.2f}s, "
        f"late reports refused={stale} done twice={done.doubles} re-started={done.reruns} "
        f"lost=0 time={time.monotonic() - st.began:.1f}s"
    )


def supervisor_stopped(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    dsn: str,
    *,
    timeout: float,
    jobs: int,
    pace: float = 0.01,
    stop_s: float,
    window: float = WINDOW_S,
) -> str:
    """SIGSTOP the victim's supervisor alone (its workers run on) for ``stop_s`` > T, then
    SIGCONT. Its workers, no longer renewed, kill their jobs and exit after T / 2
    (worker/fence.py): when the others run the jobs again after T, no copy runs."""
    st = stage(
        make_daemon,
        ledger_path,
        (dsn, dsn),
        timeout=timeout,
        jobs=jobs,
        seed=4,
        pace=pace,
    )
    victim = st.nodes[0]
    procs = victim.process_tree()
    procs[0].suspend()
    at = time.monotonic()
    try:
        _, rerun = rerun_after(st, at, timeout)
        assert rerun <= timeout + 1.0, f"ran again {rerun:.2f} s after the stop"
        time.sleep(max(0.0, at + stop_s - time.monotonic()))
    finally:  # (a failure above must not leave the node frozen for the clean-up)
        procs[0].resume()
    resumed = time.monotonic()
    wait_rejoined(st, victim)
    time.sleep(RUN_ON_S)  # (the copies run on: one the fence missed would overlap)
    victim_pids = {p.pid for p in procs}
    done = finish(st, victim_pids, window=window)
    return (
        f"supervisor alone SIGSTOPped {resumed - at:.1f}s (workers running): T={timeout}s "
        f"jobs={done.jobs} re-run after {rerun:.2f}s, overlap={done.overlap:.3f}s "
        f"(its workers fenced themselves) done twice={done.doubles} lost=0 "
        f"time={time.monotonic() - st.began:.1f}s"
    )


def db_restart(
    make_daemon: MakeDaemon,
    ledger_path: Path,
    *,
    timeout: float,
    jobs: int,
    pace: float = 0.01,
    down_s: float,
) -> str:
    """Stop the PostgreSQL server (fast: it ends every session) under load, keep it down
    ``down_s``, start it again. A server of the scenario's own: the suite's is shared by
    the test process.

    Meanwhile every node answers an enqueue at once with ``store_unavailable`` (one line
    from semctl); after: every node serves again without a restart of its own (measured:
    from the server back to each node's first acknowledged enqueue), and every job a
    client got an id for ends DONE."""
    began = time.monotonic()
    cluster = PostgresCluster().start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE chaos")
        dsn = cluster.dsn("chaos")
        rng = random.Random(5)
        ticks = Ticks(ledger_path.with_name("ticks"))
        where = ledger_path.parent
        nodes = [start_node(make_daemon, where, dsn, f"n{i}", timeout) for i in (1, 2, 3)]
        pids = [node.proc.pid for node in nodes if node.proc is not None]
        batch = [ticks_job(ledger_path, ticks.path) for _ in range(2)]
        batch += [job_spec(rng, ledger_path, (0.01, 0.1)) for _ in range(jobs)]
        with nodes[0].client() as client:
            acked = [job.id for job in client.enqueue_many(batch)]
        loads = [Load(node, ledger_path, seed=rng.randrange(1 << 30), pace=pace) for node in nodes]
        for load in loads:
            load.start()
        ledger = Ledger(ledger_path)
        ledger.wait_for(lambda lg: len(lg.ends) >= 20, timeout=30, what="the load running")
        cluster.stop("fast")
        down = time.monotonic()
        refusals = [refused(node) for node in nodes]
        time.sleep(max(0.0, down + down_s - time.monotonic()))
        cluster.start_again()
        up = time.monotonic()
        recovered = [serving_again(load, up) for load in loads]
        time.sleep(1.0)  # (the load goes on a while on every node)
        ticks.release()
        for load in loads:
            acked += load.stop()
            codes = {code for code, _, _ in load.errors}
            assert codes <= {"store_unavailable"}, f"enqueues failed otherwise: {codes}"
            slowest = max((took for _, took, _ in load.errors), default=0.0)
            assert slowest < 3.0, f"an enqueue took {slowest:.2f} s to fail"
        with nodes[0].client() as client:
            finished = wait_all(client, acked, timeout=180)
        not_done = [job for job in finished.values() if job.state != JobState.DONE]
        assert not not_done, f"acknowledged jobs not DONE: {not_done[:5]}"
        assert [node.proc.pid for node in nodes if node.proc is not None] == pids
        assert all(node.proc is not None and node.proc.poll() is None for node in nodes)
        overlap = ticks.read().overlap()
        assert overlap == 0.0, f"two copies of a job ran at once for {overlap:.3f} s"
        refusal = max(took for took, _ in refusals)
        errors = sum(len(load.errors) for load in loads)
        fenced = sum(len(events(node, "killed this node's running jobs")) for node in nodes)
        rejoined = sum(len(events(node, "joined")) - 1 for node in nodes)
        return (
            f"PostgreSQL restarted (down {up - down:.1f}s): T={timeout}s jobs={len(acked)} "
            f"semctl enqueue meanwhile: store_unavailable, one line, in <= {refusal:.2f}s; "
            f"load enqueues refused={errors}; nodes serving again "
            f"{', '.join(f'{r:.2f}s' for r in recovered)} after the server was back; "
            f"node restarts=0 fences={fenced} rejoined as new nodes={rejoined} "
            f"overlap={overlap:.3f}s lost=0 "
            f"time={time.monotonic() - began:.1f}s"
        )
    finally:
        cluster.remove()


def refused(node: Daemon) -> tuple[float, str]:
    """``semctl enqueue`` on a node whose server is down: (how long it took, its error)."""
    began = time.monotonic()
    result = node.semctl("enqueue", "CHAOS_SLEEP", "--payload", "{}", timeout=30)
    took = time.monotonic() - began
    lines = result.err.strip().splitlines()
    assert result.code == EXIT_JOB_FAILED, (result.code, result.err)
    assert len(lines) == 1 and "unavailable" in lines[0], result.err
    return took, lines[0]


def serving_again(load: Load, up: float, timeout: float = 30) -> float:
    """Seconds from ``up`` to the first enqueue acknowledged through ``load``'s node."""
    deadline = time.monotonic() + timeout
    while not [at for at in load.served if at > up]:
        assert time.monotonic() < deadline, f"{load.node.home} does not serve again"
        time.sleep(0.01)
    return min(at for at in load.served if at > up) - up
