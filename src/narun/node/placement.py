"""Who runs which replica: a pure function every node computes the same way.

:func:`plan` takes one app, the live nodes and the current placements and says which node
should own every slot and which slots are surplus. Nodes then write only the claims that
name themselves, with compare-and-set in the ``narun-placements`` KV (``runner``), so a race
between nodes with different views ends with exactly one owner.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["NodeView", "Plan", "eligible", "pinned_slots", "plan"]


@dataclass(frozen=True)
class NodeView:
    """What placement needs to know about a live node."""

    node_id: str
    labels: Mapping[str, str]
    instances: int = 0
    """Instances it runs now (all apps): spreads load across apps."""
    accepting: bool = True
    """False while the node shuts down: it takes nothing new."""


@dataclass(frozen=True)
class Plan:
    """The placement of one app."""

    owners: dict[int, str]
    """Slot index -> node ID that should own it (slots with no eligible node are absent)."""
    surplus: tuple[int, ...]
    """Slots that have a placement but are beyond ``replicas``: their owner releases them."""


def pinned_slots(pins: Mapping[str, int]) -> dict[int, str]:
    """``{n1: 2, n2: 1}`` -> ``{0: n1, 1: n1, 2: n2}`` (nodes in name order)."""
    out: dict[int, str] = {}
    for node in sorted(pins):
        for _ in range(pins[node]):
            out[len(out)] = node
    return out


def eligible(node: NodeView, labels: Mapping[str, str]) -> bool:
    """Whether ``node`` carries every ``key=value`` of ``labels``."""
    return all(node.labels.get(k) == v for k, v in labels.items())


def _score(app: str, index: int, node: str) -> int:
    digest = hashlib.sha256(f"{app}\0{index}\0{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def plan(
    app: str,
    *,
    replicas: int,
    pins: Mapping[str, int],
    labels: Mapping[str, str],
    nodes: Mapping[str, NodeView],
    placements: Mapping[int, str],
) -> Plan:
    """Owners for slots ``0 .. replicas-1`` of ``app``.

    A slot keeps its owner while the owner is live and eligible; pinned slots belong to
    their node (and stay unplaced while it is away); an unowned slot goes to the accepting
    eligible node with the fewest slots of this app, then the fewest instances, then the
    highest rendezvous hash of ``(app, slot, node)``.
    """
    pinned = pinned_slots(pins)
    owners: dict[int, str] = {}
    per_app: Counter[str] = Counter()
    load: Counter[str] = Counter({n: v.instances for n, v in nodes.items()})
    free: list[int] = []
    for index in range(replicas):
        if index in pinned:
            if pinned[index] in nodes:
                owners[index] = pinned[index]
                per_app[pinned[index]] += 1
            continue
        owner = placements.get(index)
        if owner is not None and owner in nodes and eligible(nodes[owner], labels):
            owners[index] = owner
            per_app[owner] += 1
        else:
            free.append(index)
    candidates = [v.node_id for v in nodes.values() if v.accepting and eligible(v, labels)]
    for index in free:
        if not candidates:
            break
        best = min(candidates, key=lambda n: (per_app[n], load[n], -_score(app, index, n)))
        owners[index] = best
        per_app[best] += 1
        load[best] += 1
    surplus = tuple(sorted(i for i in placements if i >= replicas))
    return Plan(owners=owners, surplus=surplus)
