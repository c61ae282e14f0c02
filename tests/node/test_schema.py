"""The JSON documents in NATS: Go narun's fields, round trips."""

from __future__ import annotations

import json

from narun.node.schema import (
    InstanceState,
    LogLine,
    NodeState,
    Placement,
    StatusUpdate,
    log_subject,
    placement_key,
    status_subject,
)


def test_subjects_and_keys() -> None:
    assert log_subject("shop", "n1") == "logs.shop.n1"
    assert status_subject("shop", "n1") == "status.shop.n1"
    assert placement_key("shop", 2) == "shop.2"


def test_node_state_has_go_fields_and_round_trips() -> None:
    inst = InstanceState("shop-0", "shop", "abc", "r1", "failed", exit_code=3, last_lines=("x",))
    state = NodeState(
        "n1",
        "t",
        "0.1.0",
        "t0",
        ("shop-0",),
        "running",
        "linux",
        "x86_64",
        {"z": "a"},
        "3.12",
        (inst,),
    )
    doc = json.loads(state.encode())
    for key in (
        "node_id",
        "last_seen",
        "version",
        "start_time",
        "managed_instances",
        "status",
        "os",
        "arch",
    ):
        assert key in doc
    assert NodeState.decode(state.encode()) == state
    assert NodeState.decode(b"not json") is None


def test_status_leaves_out_unset_fields_like_go() -> None:
    doc = json.loads(StatusUpdate("shop-0", "n1", "starting", "t", "shop", "v", "r", 0).encode())
    assert "pid" not in doc
    assert "exit_code" not in doc
    assert "error" not in doc
    doc = json.loads(
        StatusUpdate("shop-0", "n1", "crashed", "t", "shop", "v", "r", 1, exit_code=0).encode()
    )
    assert doc["exit_code"] == 0


def test_log_line_and_placement_round_trip() -> None:
    line = LogLine("shop-0", "shop", "n1", "stderr", "boom", "t", "r")
    assert LogLine.decode(line.encode()) == line
    assert LogLine.decode(b"{}") is None
    p = Placement("shop", 1, "n2", "t")
    assert Placement.decode(p.encode()) == p
    assert Placement.decode(b'{"app_name": 1}') is None
