"""The docs keep up with the code: every message, command and setting is described."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import typer.main

from semantica import errors, protocol
from semantica.control.cli import app
from semantica.supervisor.cli import FLAGS

ROOT = Path(__file__).resolve().parents[2]


def _members(union: object) -> list[type]:
    return list(typing.get_args(union))


ALL_MESSAGES = {
    cls
    for union in (
        protocol.ControlRequest,
        protocol.ControlReply,
        protocol.ToWorker,
        protocol.FromWorker,
    )
    for cls in _members(union)
}


@pytest.mark.parametrize("cls", sorted(ALL_MESSAGES, key=lambda c: c.__name__))
def test_every_message_is_in_the_protocol_doc(cls: type) -> None:
    """docs/protocol.md has a section for each message, under its wire tag."""
    tag = cls.__struct_config__.tag
    assert f"`{tag}`: `{cls.__name__}`" in (ROOT / "docs" / "protocol.md").read_text()


@pytest.mark.parametrize("command", sorted(c.name or "" for c in app.registered_commands))
def test_every_semctl_command_is_in_the_readme(command: str) -> None:
    """The README's command table lists every semctl command."""
    assert f"semctl {command}" in (ROOT / "README.md").read_text()


def _group_commands() -> list[tuple[str, str]]:
    """Every (group, command) of semctl's command groups: ``("schedule", "pause")``."""
    root: Any = typer.main.get_command(app)  # (a group: typer's own click, untyped)
    return sorted(
        (name, command)
        for name, group in root.commands.items()
        for command in getattr(group, "commands", {})
    )


@pytest.mark.parametrize(("group", "command"), _group_commands())
def test_every_command_of_a_semctl_group_is_in_the_readme(group: str, command: str) -> None:
    """The README's command table names each command of a group (``schedule pause``) in
    the first cell of a row for ``semctl GROUP``, which may list several:
    ``semctl schedule pause NAME` / `resume NAME``."""
    rows = [
        line.split("|")[1]
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith(f"| `semctl {group} ")
    ]
    word = re.compile(rf"(?<![\w-]){re.escape(command)}(?![\w-])")
    assert any(word.search(row.replace(f"semctl {group}", "")) for row in rows), rows


@pytest.mark.parametrize("name", [flag for flag, _, _ in FLAGS])
def test_every_setting_is_in_the_readme(name: str) -> None:
    """The README's settings table lists every semanticad flag and its variable."""
    readme = (ROOT / "README.md").read_text()
    assert f"SEMANTICA_{name.upper()}" in readme
    assert "--" + name.replace("_", "-") in readme


def _error_classes() -> list[type[errors.SemanticaError]]:
    found, todo = [], [errors.SemanticaError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in _error_classes()
        if c.__module__ == errors.__name__ and c is not errors.SemanticaError
    ],
)
def test_every_error_code_is_in_the_protocol_doc(cls: type[errors.SemanticaError]) -> None:
    """docs/protocol.md's error table has a row for each error code a client can meet."""
    assert f"| `{cls.code}` |" in (ROOT / "docs" / "protocol.md").read_text()


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_docs_refer_only_to_files_in_the_repository(doc: Path) -> None:
    """Every relative link resolves to a file of the repository, and no page sends the
    reader to a design note that is not in it."""
    text = doc.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is missing"
    assert "DESIGN.md" not in text, f"{doc.name} refers to DESIGN.md, which is not in the repo"


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _module_map() -> set[str]:
    """The files named in the first column of docs/architecture.md's module map, as
    paths from the repository root (a path not under ``semantica/`` or ``sql/`` is
    written from ``semantica/``)."""
    section = ARCHITECTURE.read_text().split("\n## Module map\n", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in section.splitlines():
        cell = re.match(r"\| `([^`]+)`", line)
        if cell:
            path = cell.group(1)
            named.add(path if path.startswith(("semantica/", "sql/")) else f"semantica/{path}")
    return named


#: Every module of the package, and every schema migration (its up file).
MODULES = sorted(
    [p.relative_to(ROOT).as_posix() for p in (ROOT / "semantica").rglob("*.py")]
    + [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "sql").glob("[0-9]*.sql")
        if not p.name.endswith(".down.sql")
    ]
)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_in_the_module_map(module: str) -> None:
    """docs/architecture.md's module map has a row for each module of semantica/ and each
    migration in sql/: a module added without one fails here."""
    assert module in _module_map(), f"{module} is missing from the module map"


def test_the_module_map_names_only_files_that_exist() -> None:
    """A row whose module moved or went away fails here."""
    missing = sorted(path for path in _module_map() if not (ROOT / path).is_file())
    assert missing == []
