"""The conformance suite exercises the whole contract: every member of JobStore and
StoreUpkeep is used by some test here.

A static check of the test sources: a member counts as used where a test reads
it off something named like a store or its upkeep handle (``store.lease(...)``,
``self.store.clock``, ``upkeep.check()``), so that ``dict.get`` or
``list.count`` do not count for ``get`` or ``count``. A member added to the
contract without a test here fails this test, naming it.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

import pytest

from semantica.supervisor.store import JobStore, StoreUpkeep

HERE = Path(__file__).resolve().parent
#: What a store, and an upkeep handle, are called in these tests.
UPKEEP = re.compile(r"upkeep|side", re.IGNORECASE)
STORE = re.compile(r"store", re.IGNORECASE)


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


def _used(upkeep: bool) -> set[str]:
    """Every attribute read off a store's name (or, with ``upkeep``, an upkeep handle's)
    in the suite's sources, this file aside."""
    used: set[str] = set()
    for path in sorted(HERE.glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Attribute):
                continue
            receiver = ast.unparse(node.value)
            is_upkeep = UPKEEP.search(receiver) is not None
            is_store = STORE.search(receiver) is not None and not is_upkeep
            if is_upkeep if upkeep else is_store:
                used.add(node.attr)
    return used


@pytest.mark.parametrize("protocol", [JobStore, StoreUpkeep], ids=lambda p: p.__name__)
def test_every_member_of_the_contract_is_tested(protocol: type) -> None:
    """Each method, property and attribute of the contract is used by some test here."""
    members = _members(protocol)
    assert members, f"no members found on {protocol.__name__}"
    missing = sorted(members - _used(upkeep=protocol is StoreUpkeep))
    assert not missing, f"no test in tests/store uses {protocol.__name__}: {', '.join(missing)}"
