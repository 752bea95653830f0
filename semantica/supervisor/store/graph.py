"""Dependencies of an enqueue, resolved before the store: refs, cycles, insertion order.

A spec may wait for other jobs (``after``: until they are DONE; ``after_end``:
until they end, however). An item is a job id (a job that exists) or, in one
request, the ``ref`` of another spec of that request. :func:`plan` resolves the
refs of one request, refuses an unknown ref or a cycle with one line naming
them, and puts the specs in an order in which each comes after every spec it
waits for (so the store inserts a job after the jobs it waits for, and gives it
the larger id); the reply keeps the request's order (``Plan.order``).

A request without refs costs one look at each spec's two lists. A cycle with
jobs that already exist cannot be built: a new job waits only for jobs that
exist or are in its own request. Whether the ids name jobs is the store's to
say (``NoSuchJob``), inside the transaction that adds the edges.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import TypeVar

import msgspec

from semantica.errors import BadInput
from semantica.models import DependencyMode, short_repr
from semantica.supervisor.store.records import Edge, Prepared

T = TypeVar("T")


class Plan(msgspec.Struct):
    """What to insert, in order, and where each spec of the request went.

    ``prepared[k]`` is spec ``order[k]`` of the request, its ``edges`` resolved
    (a ref became the place of its spec in ``prepared``).
    """

    prepared: list[Prepared]
    order: list[int] | None = None  # None: the request's own order

    def in_request_order(self, items: Sequence[T]) -> list[T]:
        """``items`` (one per inserted spec, in insertion order) in the request's order."""
        if self.order is None:
            return list(items)
        back: list[T] = list(items)
        for place, index in enumerate(self.order):
            back[index] = items[place]
        return back


def has_refs(prepared: Sequence[Prepared]) -> bool:
    """Whether a spec of the request names a ref, or waits for one: the request is a
    graph, to be inserted in one transaction."""
    return any(
        item.spec.ref is not None
        or any(isinstance(x, str) for x in item.spec.after)
        or any(isinstance(x, str) for x in item.spec.after_end)
        for item in prepared
        if item.spec.ref is not None or item.spec.after or item.spec.after_end
    )


def _edges(after: Sequence[int | str], after_end: Sequence[int | str]) -> dict[int | str, str]:
    """Each target once; waiting for DONE wins over waiting for the end."""
    targets: dict[int | str, str] = {}
    for item in after_end:
        targets[item] = DependencyMode.END.value
    for item in after:
        targets[item] = DependencyMode.DONE.value
    return targets


def plan(prepared: Sequence[Prepared]) -> Plan:
    """Resolve the dependencies of one request (see the module docstring).

    Raises:
        BadInput: a ref given twice, a ref no spec of the request has, or a cycle.
    """
    if not has_refs(prepared):
        out = []
        for item in prepared:
            spec = item.spec
            if spec.after or spec.after_end:
                edges = tuple(
                    Edge(int(target), mode)
                    for target, mode in _edges(spec.after, spec.after_end).items()
                )
                item = msgspec.structs.replace(item, edges=edges)
            out.append(item)
        return Plan(out)
    refs: dict[str, int] = {}
    for index, item in enumerate(prepared):
        ref = item.spec.ref
        if ref is not None:
            if ref in refs:
                raise BadInput(f"ref {short_repr(ref)} names two jobs of the request")
            refs[ref] = index
    wanted: list[dict[int | str, str]] = []
    for item in prepared:
        targets = _edges(item.spec.after, item.spec.after_end)
        for target in targets:
            if isinstance(target, str) and target not in refs:
                raise BadInput(f"after: no job of the request has ref {short_repr(target)}")
        wanted.append(targets)
    order = _topological(prepared, wanted, refs)
    place = {index: k for k, index in enumerate(order)}
    out = []
    for index in order:
        item = prepared[index]
        edges = tuple(
            Edge(place[refs[target]], mode, local=True)
            if isinstance(target, str)
            else Edge(target, mode)
            for target, mode in wanted[index].items()
        )
        out.append(msgspec.structs.replace(item, edges=edges))
    return Plan(out, None if order == sorted(order) else order)


def _topological(
    prepared: Sequence[Prepared], wanted: list[dict[int | str, str]], refs: dict[str, int]
) -> list[int]:
    """The specs' indexes, each after those it waits for, otherwise in request order.

    Raises:
        BadInput: the refs make a cycle (the line names the refs in it).
    """
    count = len(prepared)
    waits = [sum(1 for t in targets if isinstance(t, str)) for targets in wanted]
    dependents: list[list[int]] = [[] for _ in range(count)]
    for index, targets in enumerate(wanted):
        for target in targets:
            if isinstance(target, str):
                dependents[refs[target]].append(index)
    # Kahn's algorithm; the ready specs are taken lowest index first, so a request
    # already in order stays as it is.
    ready = [index for index in range(count) if waits[index] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            waits[dependent] -= 1
            if waits[dependent] == 0:
                heapq.heappush(ready, dependent)
    if len(order) < count:
        raise BadInput(f"after: the refs make a cycle: {_cycle(wanted, refs, prepared, order)}")
    return order


def _cycle(
    wanted: list[dict[int | str, str]],
    refs: dict[str, int],
    prepared: Sequence[Prepared],
    placed: list[int],
) -> str:
    """One cycle among the specs left out of ``placed``, as ``a -> b -> a``."""
    left = set(range(len(prepared))) - set(placed)
    start = min(left)
    path: list[int] = []
    seen: dict[int, int] = {}
    index = start
    while index not in seen:
        seen[index] = len(path)
        path.append(index)
        index = next(refs[t] for t in wanted[index] if isinstance(t, str) and refs[t] in left)
    loop = [*path[seen[index] :], index]
    return " -> ".join(
        short_repr(prepared[i].spec.ref) if prepared[i].spec.ref else f"job {i}" for i in loop
    )
