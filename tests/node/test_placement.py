"""Placement: the pure plan every node computes."""

from __future__ import annotations

from collections import Counter

from narun.node.placement import NodeView, pinned_slots, plan


def views(*ids: str, **labels: dict[str, str]) -> dict[str, NodeView]:
    return {i: NodeView(i, labels.get(i, {})) for i in ids}


def test_replicas_spread_evenly_over_nodes() -> None:
    result = plan("shop", replicas=4, pins={}, labels={}, nodes=views("n1", "n2"), placements={})
    assert sorted(result.owners) == [0, 1, 2, 3]
    assert Counter(result.owners.values()) == {"n1": 2, "n2": 2}


def test_every_node_computes_the_same_plan() -> None:
    nodes = views("a", "b", "c")
    first = plan("shop", replicas=5, pins={}, labels={}, nodes=nodes, placements={})
    again = plan(
        "shop", replicas=5, pins={}, labels={}, nodes=dict(reversed(nodes.items())), placements={}
    )
    assert first == again


def test_live_owners_keep_their_slots() -> None:
    result = plan(
        "shop",
        replicas=2,
        pins={},
        labels={},
        nodes=views("n1", "n2"),
        placements={0: "n1", 1: "n1"},
    )
    assert result.owners == {0: "n1", 1: "n1"}  # no reshuffle: it would double instances


def test_a_dead_owners_slots_move_to_live_nodes() -> None:
    result = plan(
        "shop",
        replicas=3,
        pins={},
        labels={},
        nodes=views("n2", "n3"),
        placements={0: "n1", 1: "n2", 2: "n1"},
    )
    assert result.owners[1] == "n2"
    assert {result.owners[0], result.owners[2]} <= {"n2", "n3"}
    assert Counter(result.owners.values())["n3"] >= 1


def test_labels_select_nodes() -> None:
    nodes = views("n1", "n2", n2={"zone": "b"})
    result = plan("shop", replicas=3, pins={}, labels={"zone": "b"}, nodes=nodes, placements={})
    assert set(result.owners.values()) == {"n2"}
    none = plan("shop", replicas=1, pins={}, labels={"zone": "c"}, nodes=nodes, placements={})
    assert none.owners == {}


def test_pinned_slots_stay_with_their_node_even_when_it_is_away() -> None:
    assert pinned_slots({"n2": 1, "n1": 2}) == {0: "n1", 1: "n1", 2: "n2"}
    result = plan(
        "shop",
        replicas=3,
        pins={"n1": 2, "n2": 1},
        labels={},
        nodes=views("n1"),
        placements={2: "n2"},
    )
    assert result.owners == {0: "n1", 1: "n1"}


def test_a_node_shutting_down_takes_nothing_new() -> None:
    nodes = {"n1": NodeView("n1", {}, accepting=False), "n2": NodeView("n2", {})}
    result = plan("shop", replicas=2, pins={}, labels={}, nodes=nodes, placements={})
    assert set(result.owners.values()) == {"n2"}


def test_scale_down_marks_surplus_slots() -> None:
    result = plan(
        "shop",
        replicas=1,
        pins={},
        labels={},
        nodes=views("n1"),
        placements={0: "n1", 1: "n1", 4: "n1"},
    )
    assert result.owners == {0: "n1"}
    assert result.surplus == (1, 4)


def test_load_on_other_apps_breaks_ties() -> None:
    nodes = {"busy": NodeView("busy", {}, instances=5), "idle": NodeView("idle", {})}
    result = plan("shop", replicas=1, pins={}, labels={}, nodes=nodes, placements={})
    assert result.owners == {0: "idle"}
