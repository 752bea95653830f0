"""The arrows allowed between the parts (docs/architecture.md), checked on every import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "semantica"
STORE = PACKAGE / "supervisor" / "store"
SIDES = ("supervisor", "worker", "control")


def _modules(folder: Path) -> Iterator[Path]:
    yield from sorted(folder.rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative ones resolved), with its line."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from semantica.supervisor import app`
                yield node.lineno, f"{base}.{alias.name}"


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line}"


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("side", SIDES)
def test_the_three_sides_never_import_each_other(side: str) -> None:
    """supervisor/, worker/ and control/ share only the top-level semantica/ modules."""
    others = [f"semantica.{other}" for other in SIDES if other != side]
    wrong = [
        f"{_where(path, line)} imports {name}"
        for path in _modules(PACKAGE / side)
        for line, name in _imports(path)
        if any(_under(name, other) for other in others)
    ]
    assert wrong == []


def test_only_the_store_package_speaks_sql() -> None:
    """No module outside supervisor/store/ imports sqlite3 or sqlite_utils, or reaches into
    a backend (``store.sqlite``): the rest of the supervisor names the contract only."""
    wrong = [
        f"{_where(path, line)} imports {name}"
        for path in _modules(PACKAGE)
        if STORE not in path.parents
        for line, name in _imports(path)
        if _under(name, "sqlite3")
        or _under(name, "sqlite_utils")
        or _under(name, "semantica.supervisor.store.sqlite")
    ]
    assert wrong == []


def test_the_store_package_imports_nothing_of_the_supervisor() -> None:
    """The store sits below the supervisor: it imports semantica/'s shared modules and
    itself, never the rest of supervisor/ (its clock comes from semantica.clock)."""
    wrong = [
        f"{_where(path, line)} imports {name}"
        for path in _modules(STORE)
        for line, name in _imports(path)
        if _under(name, "semantica.supervisor")
        and not _under(name, "semantica.supervisor.store")
        and name != "semantica.supervisor"
    ]
    assert wrong == []


def test_the_checks_see_an_import() -> None:
    """The import walk finds what it looks for (so the tests above can fail)."""
    names = {name for _, name in _imports(STORE / "sqlite" / "connection.py")}
    assert "sqlite3" in names
    assert "semantica.supervisor.store.contract.BUSY_PATIENCE_S" in names


def test_only_semctl_web_imports_the_web_view() -> None:
    """The browser view (control/web/) is imported by the ``semctl web`` command alone,
    inside the command: starlette and hypercorn never load for another command."""
    web = PACKAGE / "control" / "web"
    wrong = [
        f"{_where(path, line)} imports {name}"
        for path in _modules(PACKAGE)
        if web not in path.parents and path != PACKAGE / "control" / "web_cmd.py"
        for line, name in _imports(path)
        if _under(name, "semantica.control.web")
        or _under(name, "starlette")
        or _under(name, "hypercorn")
    ]
    assert wrong == []
    # web_cmd imports it inside the command only (no module-level import).
    tree = ast.parse((PACKAGE / "control" / "web_cmd.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not any("web" in (getattr(n, "module", "") or "").split(".")[-1:] for n in top)
