"""The dependencies of an enqueue, before the store: refs, cycles, order (store/graph.py)."""

from __future__ import annotations

import pytest

from semantica.errors import BadInput
from semantica.models import JobSpec
from semantica.supervisor.store import Edge, has_refs, plan, prepare


def _specs(*items: dict[str, object]) -> list[JobSpec]:
    return [JobSpec(type="T", **item) for item in items]  # type: ignore[arg-type]


def test_a_request_without_refs_keeps_its_order_and_its_ids() -> None:
    prepared = prepare(_specs({}, {"after": [3, 4], "after_end": [4, 5]}))
    assert not has_refs(prepared)
    planned = plan(prepared)
    assert planned.order is None
    assert planned.prepared[0].edges == ()
    # Each target once; waiting for DONE wins over waiting for the end.
    assert set(planned.prepared[1].edges) == {Edge(3, "done"), Edge(4, "done"), Edge(5, "end")}


def test_refs_become_places_and_each_job_comes_after_those_it_waits_for() -> None:
    prepared = prepare(
        _specs(
            {"ref": "deploy", "after": ["test"]},
            {"ref": "test", "after": ["build", 7]},
            {"ref": "build"},
            {"after_end": ["deploy"]},
        )
    )
    assert has_refs(prepared)
    planned = plan(prepared)
    assert planned.order == [2, 1, 0, 3]  # build, test, deploy, clean-up
    build, test, deploy, cleanup = planned.prepared
    assert build.edges == ()
    assert set(test.edges) == {Edge(0, "done", local=True), Edge(7, "done")}
    assert deploy.edges == (Edge(1, "done", local=True),)
    assert cleanup.edges == (Edge(2, "end", local=True),)
    assert planned.in_request_order(["b", "t", "d", "c"]) == ["d", "t", "b", "c"]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"ref": "a", "after": ["a"]}], "cycle: 'a' -> 'a'"),
        (
            [
                {"ref": "a", "after": ["c"]},
                {"ref": "b", "after": ["a"]},
                {"ref": "c", "after": ["b"]},
            ],
            "cycle: 'a' -> 'c' -> 'b' -> 'a'",
        ),
        ([{"after": ["nope"]}], "no job of the request has ref 'nope'"),
        ([{"ref": "x"}, {"ref": "x"}], "ref 'x' names two jobs"),
    ],
)
def test_bad_graphs_are_refused_with_one_line(items: list[dict[str, object]], message: str) -> None:
    with pytest.raises(BadInput, match=message) as caught:
        plan(prepare(_specs(*items)))
    assert "\n" not in caught.value.message


def test_a_job_waiting_on_a_cycle_is_named_by_the_cycle_not_itself() -> None:
    items = [{"after": ["a"]}, {"ref": "a", "after": ["b"]}, {"ref": "b", "after": ["a"]}]
    with pytest.raises(BadInput, match="cycle: 'a' -> 'b' -> 'a'"):
        plan(prepare(_specs(*items)))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"after": [0]}, "after: no job 0"),
        ({"after": [True]}, "a job id or a ref"),
        ({"ref": ""}, "ref: a ref is 1-200"),
        ({"after": list(range(1, 600)), "after_end": list(range(600, 1003))}, "at most 1000"),
    ],
)
def test_bad_dependencies_are_refused_alone(item: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        prepare(_specs(item))
