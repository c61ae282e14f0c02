"""The examples, through the seed's config: the seed's curl call answers as the seed shows."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import ROOT, Processes, unique_service


@pytest.fixture(scope="module")
def seed_routes() -> list[dict[str, Any]]:
    """The HTTP routes of examples/config.yaml (the seed's file), unchanged."""
    config = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    return [r for r in config["routes"] if "path" in r]


@pytest.fixture(scope="module")
def demo(nats_url: str, logs: Path, seed_routes: list[dict[str, Any]]) -> Iterator[str]:
    names = {"hello": unique_service("hello"), "goodbye": unique_service("goodbye")}
    routes = [{**r, "service": names[r["service"]]} for r in seed_routes]
    items = unique_service("items")
    routes.append({"path": "/items/", "methods": ["GET", "PUT"], "service": items})
    with Processes(logs, nats_url) as procs:
        procs.consumer("examples.hello.app:app", names["hello"])
        procs.consumer("examples.goodbye.app:app", names["goodbye"])
        procs.consumer("examples.fastapi_items.app:app", items)
        _, url = procs.gateway(routes)
        yield url


def test_seed_curl_call_answers_as_the_seed_shows(demo: str) -> None:
    response = httpx.post(
        f"{demo}/hello/",
        headers={"Content-Type": "application/json"},
        content='{"name": "NATS User"}',
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-narun-processed-by"] == socket.gethostname()
    expected = (
        '{"message":"Hello, NATS User! (processed by POST)",'
        f'"received_path":"/hello/","consumer_host":"{socket.gethostname()}"}}\n'
    )
    assert response.text == expected


def test_hello_put_and_bad_payload(demo: str) -> None:
    put = httpx.put(f"{demo}/hello/", content='{"name": "Ada"}')
    assert put.json()["message"] == "Hello, Ada! (processed by PUT)"
    bad = httpx.post(f"{demo}/hello/", content="not json")
    assert bad.status_code == 400
    assert bad.json() == {"error": "Invalid JSON payload: 'name' field is required."}
    empty = httpx.post(f"{demo}/hello/", content='{"name": ""}')
    assert empty.status_code == 400


def test_hello_outside_its_path_is_the_apps_404(demo: str) -> None:
    response = httpx.post(f"{demo}/hello/other", content='{"name": "x"}')
    assert response.status_code == 404
    assert response.text == "404 page not found\n"


def test_hello_get_is_405_at_the_gateway(demo: str) -> None:
    response = httpx.get(f"{demo}/hello/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST, PUT"


def test_goodbye_flask(demo: str) -> None:
    response = httpx.get(f"{demo}/goodbye", params={"name": "Ada"})
    assert response.status_code == 200
    assert response.json()["message"] == "Goodbye, Ada!"


def test_fastapi_items_with_lifespan_state(demo: str) -> None:
    assert httpx.get(f"{demo}/items/7").status_code == 404
    created = httpx.put(f"{demo}/items/7", json={"name": "tea", "price": 3.5})
    assert created.status_code == 200
    assert httpx.get(f"{demo}/items/7").json() == {"name": "tea", "price": 3.5}
    listing = httpx.get(f"{demo}/items/")
    assert json.loads(listing.text) == {"7": {"name": "tea", "price": 3.5}}
    invalid = httpx.put(f"{demo}/items/8", json={"name": "tea"})
    assert invalid.status_code == 422
