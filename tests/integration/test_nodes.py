"""Several supervisors ("nodes") sharing one PostgreSQL database, as users run them.

Each node is a real ``semanticad --store postgresql://...`` with its own state
directory, socket and token, on one throwaway PostgreSQL server (tests/pgcluster.py).
What a user does on one node is seen from every other: a job enqueued on one is
shown, waited for, tailed and cancelled from another; a node that dies has its
running jobs run again elsewhere within the node timeout; a node cut off from the
database stops its jobs before the others run them again.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from harness import Announcements, Daemon
from pgcluster import ROLE

from semantica.models import Job, JobSpec, JobState
from semantica.schedules import ScheduleSpec
from semantica.supervisor.store import open_store

#: Short, so the tests do not wait long for a node to be declared dead.
NODE_TIMEOUT = 2.0

MakeNodes = Callable[..., list[Daemon]]


@pytest.fixture
def make_nodes(make_daemon: Callable[..., Daemon], pg_database: str) -> MakeNodes:
    """Start ``count`` nodes on one fresh database: ``make_nodes(3)``; ``store`` replaces
    the connection string (to go through a proxy, say) for the nodes named in ``via``."""

    def make(count: int, store: str | None = None, via: tuple[int, ...] = ()) -> list[Daemon]:
        nodes = []
        for i in range(count):
            url = store if store is not None and i in via else pg_database
            nodes.append(
                make_daemon(
                    "--store",
                    url,
                    "--node-name",
                    f"n{i + 1}",
                    "--node-timeout",
                    str(NODE_TIMEOUT),
                )
            )
        return nodes

    return make


def status(node: Daemon) -> dict[str, Any]:
    result = node.semctl("status", "--json")
    assert result.code == 0, result.err
    status: dict[str, Any] = result.json()
    return status


def wait_until(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def node_of_pid(nodes: list[Daemon], pid: int) -> int:
    """Which node (its index) runs the worker ``pid``."""
    for i, node in enumerate(nodes):
        if pid in {p.pid for p in node.process_tree()}:
            return i
    raise AssertionError(f"no node runs pid {pid}")


def test_every_node_sees_the_whole_cluster(make_nodes: MakeNodes) -> None:
    nodes = make_nodes(3)
    for node in nodes:
        reply = status(node)
        assert sorted(n["name"] for n in reply["nodes"] if n["state"] == "alive") == [
            "n1",
            "n2",
            "n3",
        ]
        assert [n["name"] for n in reply["nodes"] if n["this"]] == [reply["node"]]
        wait_until(
            "every node's workers",
            lambda node=node: len(status(node)["workers"]) == 6,  # type: ignore[misc]
        )
        workers = status(node)["workers"]
        assert {w["node"] for w in workers} == {"n1", "n2", "n3"}
        assert reply["store"].startswith("postgresql://") or "dbname=" in reply["store"]
    top = nodes[1].semctl("top", "--json").json()
    assert top["node"] == "n2"
    assert sorted(w["node"] for w in top["workers"]) == ["n1", "n1", "n2", "n2", "n3", "n3"]
    frame = nodes[1].semctl("top", "--once").out
    assert "nodes: n1 alive, n2 alive, n3 alive" in frame
    metrics = nodes[2].semctl("metrics").out
    assert 'semantica_nodes{state="alive"} 3.0' in metrics
    assert 'semantica_cluster_workers{node="n1",state="idle"} 2.0' in metrics


def test_a_job_enqueued_on_one_node_is_seen_waited_for_and_logged_from_another(
    make_nodes: MakeNodes,
) -> None:
    n1, n2, n3 = make_nodes(3)
    result = n1.semctl("enqueue", "ADD", "--payload", '{"a": 2, "b": 3}')
    assert result.code == 0, result.err
    job_id = result.out.strip()
    waited = n3.semctl("wait", job_id, "--json")
    assert waited.code == 0, waited.err
    shown = n2.semctl("show", job_id, "--json").json()
    assert shown["state"] == "DONE"
    assert shown["node"] is None  # (only a running job has one)
    assert shown["result"] == {"sum": 5}
    for node in (n1, n2, n3):
        logs = node.semctl("logs", job_id)
        assert logs.code == 0, logs.err
        assert "adding" in logs.out


def test_a_job_running_on_one_node_is_cancelled_and_tailed_from_another(
    make_nodes: MakeNodes, announcements: Announcements, short_tmp: Path
) -> None:
    nodes = make_nodes(3)
    payload = {"notify": str(announcements.path), "marker": str(short_tmp / "marker")}
    with nodes[0].client() as client:
        job = client.enqueue("STOP_WORDS", payload=payload)
    _, _, pid = announcements.next()
    runner = node_of_pid(nodes, pid)
    other = nodes[(runner + 1) % 3]
    assert other.semctl("show", str(job.id), "--json").json()["node"] == f"n{runner + 1}"
    wait_until(
        "the job's first log line, read from another node",
        lambda: "ready" in other.semctl("logs", str(job.id)).out,
    )
    started = time.monotonic()
    cancelled = other.semctl("cancel", str(job.id), "--json")
    assert cancelled.code == 0, cancelled.err
    assert cancelled.json()[0]["state"] == JobState.CANCELLED
    assert time.monotonic() - started < 1.5  # a cooperative job: well within a second
    follow = other.semctl("tail", str(job.id), timeout=10)
    assert follow.code == 1, follow.err  # (the job did not end DONE)
    assert follow.out.splitlines() == ["ready", "saw cancel"]
    assert "CANCELLED" in follow.err


def test_a_killed_node_s_jobs_run_again_elsewhere_within_the_node_timeout(
    make_nodes: MakeNodes, announcements: Announcements, short_tmp: Path
) -> None:
    nodes = make_nodes(3)
    ledger = short_tmp / "ticks"
    with nodes[0].client() as client:
        job = client.enqueue(
            "TICKS",
            payload={"notify": str(announcements.path), "ledger": str(ledger), "seconds": 60},
            max_attempts=5,
        )
    _, _, pid = announcements.next()
    runner = node_of_pid(nodes, pid)
    victim = nodes[runner]
    for proc in victim.process_tree():  # the whole node dies at once, as a host would
        proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, _, again = announcements.next(timeout=NODE_TIMEOUT + 10)
    took = time.monotonic() - killed
    assert again != pid
    assert node_of_pid(nodes, again) != runner
    assert took < NODE_TIMEOUT + 1.5, f"ran again after {took:.2f} s"
    survivor = nodes[(runner + 1) % 3]
    reply = status(survivor)
    states = {n["name"]: n["state"] for n in reply["nodes"]}
    assert states[f"n{runner + 1}"] == "dead"
    with survivor.client() as client:
        client.cancel(job.id)
    assert overlap(ledger) == 0.0


def overlap(ledger: Path) -> float:
    """The longest time two copies of one job both ticked (two pids of one job whose
    tick spans intersect), in seconds."""
    spans: dict[int, dict[int, list[float]]] = defaultdict(dict)
    for line in ledger.read_text().splitlines():
        job, _attempt, pid, at = line.split()
        span = spans[int(job)].setdefault(int(pid), [float(at), float(at)])
        span[1] = float(at)
    worst = 0.0
    for copies in spans.values():
        ordered = sorted(copies.values())
        for (a_start, a_end), (b_start, b_end) in itertools.pairwise(ordered):
            worst = max(worst, min(a_end, b_end) - max(a_start, b_start))
    return max(worst, 0.0)


def test_a_node_cut_off_from_the_database_stops_its_jobs_before_they_run_elsewhere(
    make_daemon: Callable[..., Daemon],
    pg_database: str,
    pg_cluster: Any,
    announcements: Announcements,
    short_tmp: Path,
) -> None:
    from tcpproxy import TcpProxy

    dbname = pg_database.rsplit("dbname=", 1)[1]
    proxy = TcpProxy("127.0.0.1", pg_cluster.port)
    try:
        flags = ("--node-timeout", str(NODE_TIMEOUT))
        proxied = f"host=127.0.0.1 port={proxy.port} user={ROLE} dbname={dbname}"
        cut_off = make_daemon("--store", proxied, "--node-name", "far", *flags)
        ledger = short_tmp / "ticks"
        with cut_off.client() as client:
            job = client.enqueue(
                "TICKS",
                payload={"notify": str(announcements.path), "ledger": str(ledger), "seconds": 60},
                max_attempts=5,
            )
        _, _, _pid = announcements.next()  # it runs on the only node there is
        near = make_daemon("--store", pg_database, "--node-name", "near", *flags)
        proxy.cut()
        cut = time.monotonic()
        _, _, again = announcements.next(timeout=NODE_TIMEOUT + 10)
        took = time.monotonic() - cut
        assert again in {p.pid for p in near.process_tree()}
        assert took < NODE_TIMEOUT + 1.5, f"ran again after {took:.2f} s"
        assert overlap(ledger) == 0.0  # the cut-off node had stopped its copy before
        proxy.heal()

        def back() -> bool:
            far = [n["state"] for n in status(near)["nodes"] if n["name"] == "far"]
            return sorted(far) == ["alive", "dead"]  # its old self, and itself again

        wait_until("the cut-off node back, as a new node", back)
        with near.client() as client:
            client.cancel(job.id)
        assert overlap(ledger) == 0.0
    finally:
        proxy.close()


def test_a_supervisor_frozen_alone_has_its_workers_stop_their_jobs(
    make_nodes: MakeNodes, announcements: Announcements, short_tmp: Path
) -> None:
    """SIGSTOP of one node's supervisor only: its workers run on, but no longer renewed
    they kill their jobs and exit (worker/fence.py) before the others run them again."""
    nodes = make_nodes(2)
    ledger = short_tmp / "ticks"
    with nodes[0].client() as client:
        job = client.enqueue(
            "TICKS",
            payload={"notify": str(announcements.path), "ledger": str(ledger), "seconds": 60},
            max_attempts=5,
        )
    _, _, pid = announcements.next()
    runner = node_of_pid(nodes, pid)
    frozen = nodes[runner]
    assert frozen.proc is not None
    worker = psutil.Process(pid)
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        # It exits on its own (a zombie: its frozen parent cannot reap it).
        wait_until("the worker's exit", lambda: not alive(worker), timeout=NODE_TIMEOUT + 5)
        took = time.monotonic() - stopped
        assert took < NODE_TIMEOUT, f"the worker ran on for {took:.2f} s"
        _, _, again = announcements.next(timeout=NODE_TIMEOUT + 10)
        assert node_of_pid(nodes, again) != runner
        assert overlap(ledger) == 0.0
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    survivor = nodes[1 - runner]
    with survivor.client() as client:
        client.cancel(job.id)
    wait_until(
        "the frozen node back as a new node",
        lambda: (
            sorted(n["state"] for n in status(frozen)["nodes"] if n["name"] == frozen_name(runner))
            == ["alive", "dead"]
        ),
    )


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def frozen_name(index: int) -> str:
    return f"n{index + 1}"


def test_conditions_are_each_node_s_own(
    make_daemon: Callable[..., Daemon], pg_database: str
) -> None:
    """A node on battery does not start --require-charging jobs; a node on AC does."""
    flags = ("--store", pg_database, "--node-timeout", str(NODE_TIMEOUT))
    on_battery = make_daemon(*flags, "--node-name", "laptop", "--power", "battery")
    with on_battery.client() as client:
        job = client.enqueue("WHO", require_charging=True)
        shown = client.get(job.id)
        assert shown.state == JobState.QUEUED and shown.waiting_for == "charging"
    on_ac = make_daemon(*flags, "--node-name", "desktop", "--power", "ac")
    with on_battery.client() as client:
        done = client.wait(job.id, timeout=30)
    assert done.state == JobState.DONE
    assert done.result["pid"] in {p.pid for p in on_ac.process_tree()}


def test_three_nodes_fire_a_schedule_exactly_once_per_slot(
    make_nodes: MakeNodes, pg_database: str
) -> None:
    """A schedule every second on three nodes sharing the database: each slot gives one job,
    whichever node claims it, and no slot is skipped or missed while the nodes run."""
    nodes = make_nodes(3)
    store = open_store(pg_database, migrate=False)
    try:
        put, _ = store.put_schedule(
            ScheduleSpec(name="tick", job=JobSpec(type="ADD", payload={"a": 1, "b": 2}), every=1.0)
        )
        assert put.next_slot is not None
        first = put.next_slot.timestamp()

        def scheduled() -> list[Job]:
            return [job for job in store.list(limit=1000) if job.schedule == "tick"]

        wait_until("six slots fired", lambda: len(scheduled()) >= 6)
        jobs = scheduled()
        slots = sorted(job.slot.timestamp() for job in jobs if job.slot is not None)
        assert len(slots) == len(jobs)
        # One job per slot, the slots consecutive from the first: none twice, none lost.
        assert slots == [first + n for n in range(len(slots))]
        schedule = store.schedule("tick")
        assert schedule.missed == 0 and schedule.skipped == 0
        for job in jobs:
            n1_view = nodes[0].semctl("wait", str(job.id), "--json")
            assert n1_view.code == 0, n1_view.err
    finally:
        store.close()


def test_a_live_view_on_one_node_hears_of_jobs_on_another(make_nodes: MakeNodes) -> None:
    """The web view's pages read again on a ``changes`` tick: on a shared store a node
    ticks for the jobs other nodes enqueue and end (the change feed), not only its own."""
    n1, n2 = make_nodes(2)
    assert n2.semctl("pause", "elsewhere", "--create").code == 0  # (the job stays put)
    with n1.client() as client:
        ticks = client.changes(interval=0.1)
        assert next(ticks) == 0  # listening
        result = n2.semctl("enqueue", "ADD", "--queue", "elsewhere", "--payload", '{"a": 1}')
        assert result.code == 0, result.err
        started = time.monotonic()
        next(ticks)  # the enqueue on n2, told by the change feed
        # (well before the tick every 5 s that a shared store's stream also gets)
        assert time.monotonic() - started < 2.0, "no tick for another node's enqueue"
