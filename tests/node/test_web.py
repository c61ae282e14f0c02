"""``/discovery``'s document (Go narun's shape) and the host it advertises."""

from __future__ import annotations

import json

from narun.node.web import DiscoveryTarget, advertised_host, discovery_document


def test_the_document_has_go_s_labels_one_entry_per_instance() -> None:
    targets = [
        DiscoveryTarget("10.0.0.5", 9464, "/metrics", "shop", "shop-1", "n1", "v7"),
        DiscoveryTarget("10.0.0.5", 9465, "/m", "shop", "shop-0", "n1", "v7"),
    ]
    doc = json.loads(discovery_document(targets))
    assert doc == [
        {
            "targets": ["10.0.0.5:9465"],
            "labels": {
                "job": "narun-workload",
                "narun_app": "shop",
                "narun_instance_id": "shop-0",
                "narun_node_id": "n1",
                "narun_tag": "v7",
                "__metrics_path__": "/m",
            },
        },
        {
            "targets": ["10.0.0.5:9464"],
            "labels": {
                "job": "narun-workload",
                "narun_app": "shop",
                "narun_instance_id": "shop-1",
                "narun_node_id": "n1",
                "narun_tag": "v7",
                "__metrics_path__": "/metrics",
            },
        },
    ]
    assert json.loads(discovery_document([])) == []


def test_the_advertised_host_is_the_metrics_address_s_unless_it_is_a_wildcard() -> None:
    assert advertised_host("127.0.0.1:9100") == "127.0.0.1"
    assert advertised_host("[::1]:9100") == "::1"
    wildcard = advertised_host("0.0.0.0:9100")
    assert wildcard
    assert wildcard != "0.0.0.0"
