"""Request handlers get services, not the daemon: what they may reach, and how it is named.

* every write goes through the lifecycle: a handler's store is :class:`StoreReads`,
  JobStore's reads and nothing else (mypy refuses a write; this also checks the
  source, and that StoreReads says what JobStore says);
* nothing in the supervisor imports the module that assembles it (``app.py``)
  but its entry points;
* each request has one ``handle_<verb>``, the verb being its wire tag.
"""

from __future__ import annotations

import ast
import inspect
import typing
from pathlib import Path

import pytest

from semantica import protocol
from semantica.clock import FakeClock
from semantica.errors import BadInput
from semantica.models import JobState
from semantica.supervisor import handlers
from semantica.supervisor.events import JobEvents
from semantica.supervisor.joblogs import JobLogs
from semantica.supervisor.lifecycle import JobLifecycle
from semantica.supervisor.scheduler import Scheduler
from semantica.supervisor.store import JobStore, StoreReads
from semantica.supervisor.store.sqlite import SQLiteStore

SUPERVISOR = Path(handlers.__file__).resolve().parents[1]
HANDLERS = Path(handlers.__file__).resolve().parent
#: Modules that carry out requests, with the store as handlers see it.
HANDLER_MODULES = [*sorted(HANDLERS.glob("*.py")), SUPERVISOR / "topview.py"]
#: The store's methods that change something: none of them is a handler's to call.
WRITES = {
    "migrate",
    "close",
    "fail_fast_when_busy",
    "defer_commits",
    "commit",
    "upkeep",
    "insert",
    "lease",
    "lease_many",
    "complete",
    "complete_many",
    "set_progress",
    "fail",
    "cancel_running",
    "requeue_interrupted",
    "give_back",
    "recover_running",
    "cancel_queued",
    "retry",
    "set_queue",
}


def _members(protocol: type) -> set[str]:
    """The public members a Protocol class declares, its Protocol bases' included:
    methods, properties, attributes."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if not getattr(klass, "_is_protocol", False) or klass is typing.Protocol:
            continue
        names |= {name for name in vars(klass) if not name.startswith("_")}
        names |= {
            name for name in getattr(klass, "__annotations__", {}) if not name.startswith("_")
        }
    return names


def test_store_reads_are_the_reads_of_the_job_store() -> None:
    """StoreReads names JobStore's methods with JobStore's own signatures, and no write."""
    reads = _members(StoreReads)
    assert reads <= _members(JobStore), reads - _members(JobStore)
    assert not reads & WRITES, reads & WRITES
    assert _members(JobStore) >= WRITES  # (the list above names real methods)
    for name in sorted(reads - {"clock"}):
        assert inspect.signature(getattr(StoreReads, name)) == inspect.signature(
            getattr(JobStore, name)
        ), name


@pytest.mark.parametrize("path", HANDLER_MODULES, ids=lambda p: p.name)
def test_handlers_call_no_store_write(path: Path) -> None:
    """A handler reads the store and writes through the lifecycle: no ``….store.<write>``
    (not even through ``services.jobs.store``), and no backend."""
    tree = ast.parse(path.read_text())
    reads = _members(StoreReads)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            owner_name = (
                owner.attr
                if isinstance(owner, ast.Attribute)
                else owner.id
                if isinstance(owner, ast.Name)
                else None
            )
            if owner_name == "store":
                assert node.attr in reads, f"{path.name}:{node.lineno}: store.{node.attr}"
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("semantica.supervisor.store.sqlite"), (
                f"{path.name}:{node.lineno} imports the SQLite store"
            )


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):  # (TYPE_CHECKING blocks included)
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


#: The supervisor's entry points: they start it, so they may import what assembles it.
ENTRY_POINTS = {"app.py", "cli.py", "__main__.py"}


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted(SUPERVISOR.rglob("*.py"))
        if p.relative_to(SUPERVISOR).as_posix() not in ENTRY_POINTS
    ],
    ids=lambda p: p.relative_to(SUPERVISOR).as_posix(),
)
def test_nothing_imports_the_module_that_assembles_the_supervisor(path: Path) -> None:
    """Only the entry points import app.py: the parts of the supervisor are given what
    they need, they do not reach for the whole."""
    imported = _imported(ast.parse(path.read_text()))
    assert "semantica.supervisor.app" not in imported


def _dispatched() -> dict[str, str]:
    """The request class each ``case`` of dispatch names, and the handler it calls."""
    tree = ast.parse((HANDLERS / "dispatch.py").read_text())
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.match_case) and isinstance(node.pattern, ast.MatchClass):
            cls = node.pattern.cls
            assert isinstance(cls, ast.Name)
            calls = [
                n.func.id
                for n in ast.walk(ast.Module(body=node.body, type_ignores=[]))
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            ]
            found[cls.id] = calls[0] if calls else ""
    return found


@pytest.mark.parametrize(
    "cls",
    [c for c in typing.get_args(protocol.SupervisorRequest) if c is not protocol.Hello],
    ids=lambda c: c.__name__,
)
def test_each_request_goes_to_the_handler_named_for_its_verb(cls: type) -> None:
    """``dispatch`` sends a request to ``handle_<tag>``: one name per verb, the wire's."""
    tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
    assert _dispatched().get(cls.__name__) == f"handle_{tag}"


def test_a_queue_setting_goes_through_the_lifecycle(
    tmp_path: Path, store: SQLiteStore, clock: FakeClock
) -> None:
    """JobLifecycle.set_queue checks the setting, writes it, and wakes the scheduler (a
    resumed or raised queue may start jobs); a bad one changes nothing."""
    scheduler = Scheduler(store)
    woken: list[bool] = []
    scheduler.wake = lambda: woken.append(True)  # type: ignore[method-assign]
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), scheduler)

    info = jobs.set_queue("gpu", paused=True, limit=2)
    assert (info.name, info.paused, info.limit) == ("gpu", True, 2)
    assert info.counts[JobState.QUEUED.value] == 0
    assert woken == [True]

    with pytest.raises(BadInput):
        jobs.set_queue("gpu", limit=-1)
    with pytest.raises(BadInput):
        jobs.set_queue("no spaces allowed", paused=True)
    assert woken == [True]
    assert [(q.name, q.paused, q.limit) for q in store.queues() if q.name == "gpu"] == [
        ("gpu", True, 2)
    ]
    assert not store.queue_known("no spaces allowed")


@pytest.mark.parametrize(
    ("name", "limit"),
    [("q", -1), ("q", 10_001), ("bad name", 1), ("", None), ("q\n", None)],
)
def test_bad_queue_setting_is_refused_and_changes_nothing(
    tmp_path: Path, store: SQLiteStore, name: str, limit: int | None
) -> None:
    """A bad queue name or limit is refused with BadInput, before the store (which trusts
    what it is given), and creates no queue."""
    jobs = JobLifecycle(store, JobLogs(tmp_path / "logs", 1 << 20), JobEvents(), Scheduler(store))
    with pytest.raises(BadInput):
        jobs.set_queue(name, paused=True, limit=limit)
    assert store.queues() == []


def _verb_table() -> dict[str, list[str]]:
    """docs/protocol.md's table of verbs: tag -> its row's cells, backticks off."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    section = text.split("### One verb on every side", 1)[1].split("\n#", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_verb_table_names_every_side_as_it_is() -> None:
    """docs/protocol.md says, for each request, its class, client methods, semctl command
    and handler, and each of them exists under that name."""
    from semantica.control.async_client import AsyncClient
    from semantica.control.cli import app
    from semantica.control.client import Client

    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands
    }
    groups = {g.name: g.typer_instance for g in app.registered_groups}
    rows = _verb_table()
    requests = [c for c in typing.get_args(protocol.ControlRequest) if c is not protocol.Hello]
    assert sorted(rows) == sorted(c.__struct_config__.tag for c in requests)  # type: ignore[attr-defined]
    for cls in requests:
        tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
        _, name, methods, command, handler = rows[tag]
        assert name == f"`{cls.__name__}`"
        for method in methods.replace("`", "").split(", "):
            assert callable(getattr(Client, method)) and callable(getattr(AsyncClient, method))
        for named in command.split("`")[1::2]:
            words = named.split()
            if words[0] in groups:  # a command of a group: `schedule add`
                group = groups[words[0]]
                assert group is not None
                names = {
                    c.name or (c.callback.__name__ if c.callback else "")
                    for c in group.registered_commands
                }
                assert words[1] in names, command
            else:
                assert words[0] in commands, command
        assert handler == f"`handle_{tag}`"
