"""Scale to zero end to end: a JetStream nats-server, two `narun node`s, a gateway, httpx.

An app deployed with ``min_replicas: 0`` runs no instance until a request comes; the
gateway holds that request (and every other one that arrives meanwhile) while a node
starts one; after ``idle_seconds`` without requests it is stopped again; under load (more
requests in flight per instance than ``target_in_flight``) more instances start.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.test_node import APP, Cluster, instances, narun, ok, running, two_nodes, wait_until
from tests.support import unique_service


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with two_nodes(
        tmp_path_factory.mktemp("scale"),
        ("zero", "load", "nobody"),
        "/{}/",
        request_timeout_seconds=30,
        wake_timeout_seconds=25,
        dynamic_routes=[{"path_prefix": "/claimed/"}],
    ) as c:
        yield c


def deploy_scaled(c: Cluster, name: str, **settings: object) -> str:
    spec = {"name": name, "app": APP, "min_replicas": 0, **settings}
    path = Path(c.tmp) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return ok(narun(c.url, "deploy", "-f", str(path)))


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=60)


def test_scale_from_zero_on_the_first_requests_and_back_after_idle(scaled: Cluster) -> None:
    name = scaled.routes["zero"]
    out = deploy_scaled(scaled, name, max_replicas=2, idle_seconds=3)
    assert "0 to 2 instances, on demand" in out
    time.sleep(1.5)
    assert instances(scaled.url, name) == []  # nothing runs before a request

    urls = [f"{scaled.gateway_url}/zero/who"] * 6
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(get, urls))
    cold = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 6, [r.text for r in answers]
    # every held request was answered by the one instance the wake started
    assert len({r.json()["run"] for r in answers}) == 1
    wait_until(lambda: running(scaled.url, name), 10, "the node reports the instance")
    assert len(instances(scaled.url, name)) == 1
    assert cold < 25  # held, not failed; the figure itself is measured in bench/

    # idle for 3 s: the instance is drained and stopped, back to zero
    wait_until(lambda: not instances(scaled.url, name), 30, "back to zero")
    # and a new request wakes it again
    assert get(f"{scaled.gateway_url}/zero/who").status_code == 200


def test_scale_up_under_load(scaled: Cluster) -> None:
    name = scaled.routes["load"]
    deploy_scaled(scaled, name, max_replicas=3, idle_seconds=5, target_in_flight=2)
    assert get(f"{scaled.gateway_url}/load/who").status_code == 200
    done = threading.Event()
    statuses: list[int] = []

    def worker() -> None:  # one request in flight at a time, each held 1 s by the app
        while not done.is_set():
            statuses.append(get(f"{scaled.gateway_url}/load/sleep/1").status_code)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(worker) for _ in range(8)]
        try:
            # 8 requests in flight, target 2 per instance: more instances start
            wait_until(lambda: len(running(scaled.url, name)) >= 2, 40, "scaled up")
        finally:
            done.set()
            for future in futures:
                future.result()
    assert set(statuses) == {200}
    # no load: back to zero after the idle time
    wait_until(lambda: not instances(scaled.url, name), 40, "back to zero after the load")


def test_a_service_nobody_can_wake_fails_at_once(scaled: Cluster) -> None:
    started = time.monotonic()
    answer = get(f"{scaled.gateway_url}/nobody/who")
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "1"
    assert time.monotonic() - started < 5  # not held for the 25 s wake timeout


def test_the_claimed_route_of_an_app_at_zero_stays_and_wakes_it(scaled: Cluster) -> None:
    # The nodes stand in for the instances while there are none: the route stays.
    name = unique_service("claimed")
    deploy_scaled(scaled, name, max_replicas=1, idle_seconds=2, routes=[{"path": "/claimed/"}])
    time.sleep(3)  # several announcement rounds, and still no instance
    assert instances(scaled.url, name) == []
    answer = get(f"{scaled.gateway_url}/claimed/who")
    assert answer.status_code == 200, answer.text
    assert answer.json()["instance"] == f"{name}-0"
