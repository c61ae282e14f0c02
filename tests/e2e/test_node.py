"""The node runner end to end: a JetStream nats-server, `narun node` processes, a gateway.

Short heartbeats and expiry (``--heartbeat 0.5 --node-expiry 5``) keep it quick; every
test deploys an app of its own name. The apps come from the node's own environment
(``tests.node_project.whoami:app`` on ``PYTHONPATH``); the artifact test deploys the same
app from its project directory with its dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml

from narun.transport.server import NATSServer
from tests.support import (
    ROOT,
    Proc,
    Processes,
    count_instances,
    free_port,
    stopped_on_error,
    unique_service,
)

APP = "tests.node_project.whoami:app"
FAST = ["--heartbeat", "0.5", "--node-expiry", "5", "--reconcile-interval", "0.5"]
QUICK_RESTARTS = {"backoff_seconds": 0.2, "max_backoff_seconds": 1, "max_restarts": 3}


def narun(nats_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a narun command; its output."""
    return subprocess.run(
        [sys.executable, "-m", "narun", *args],
        env={**os.environ, "NARUN_NATS_URL": nats_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def start_node(cluster: Cluster, node_id: str, *extra: str, timeout: float = 20) -> Proc:
    """`narun node` with fast settings; waits until its state is in the KV.

    If it is not there within ``timeout`` seconds (or the wait is interrupted), the node
    is stopped before the error goes on.
    """
    proc = Proc(
        [
            "node",
            "--node-id",
            node_id,
            "--data-dir",
            str(cluster.tmp / node_id),
            "--nats-url",
            cluster.url,
            "--pass-env",
            "PYTHONPATH",
            *FAST,
            *(extra if "--metrics-addr" in extra else ("--metrics-addr", "", *extra)),
        ],
        cluster.tmp / f"{node_id}-{time.monotonic_ns()}.log",
        # The instances import tests.node_project from this checkout: the node passes
        # PYTHONPATH on (whatever the suite itself was started with).
        env={"NODE_SECRET": "s3cret", "PYTHONPATH": _python_path()},  # secret: never passed
    )
    with stopped_on_error(proc):
        wait_until(lambda: node_id in live_nodes(cluster.url), timeout, f"node {node_id} up", proc)
    return proc


def _python_path() -> str:
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(paths)


@dataclass
class Cluster:
    url: str
    tmp: Path
    nodes: dict[str, Proc]
    gateway_url: str
    routes: dict[str, str]
    metrics_port: int = 0


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, proc: Proc | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{what}: the process exited\n{proc.output()[-3000:]}")
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{proc.output()[-3000:]}" if proc is not None else ""
            raise AssertionError(f"not within {timeout}s: {what}{detail}")
        time.sleep(0.2)


def _kv(url: str, bucket: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        nc = await nats.connect(url, max_reconnect_attempts=1, connect_timeout=2)
        try:
            kv = await nc.jetstream().key_value(bucket)
            watcher = await kv.watchall(ignore_deletes=True)
            out: dict[str, Any] = {}
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    out[entry.key] = json.loads(entry.value)
            await watcher.stop()  # type: ignore[no-untyped-call]
            return out
        finally:
            await nc.close()

    return asyncio.run(read()) if not _in_loop() else _in_thread(read)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _in_thread(make: Callable[[], Any]) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def live_nodes(url: str) -> dict[str, Any]:
    """The node states in the KV; {} before the first node made the bucket.

    A failed read (a slow connect on a loaded machine) is retried, never taken for "no
    nodes": an assertion on what runs must not see an empty cluster that is not empty.
    """
    for attempt in range(5):
        try:
            return _kv(url, "node-runner-states")
        except nats.js.errors.BucketNotFoundError:
            return {}
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def instances(url: str, app: str) -> list[dict[str, Any]]:
    """Every run of ``app`` the nodes report, with ``node`` added."""
    return [
        {**i, "node": node}
        for node, state in live_nodes(url).items()
        for i in state.get("instances", [])
        if i["app_name"] == app
    ]


def running(url: str, app: str) -> list[dict[str, Any]]:
    return [i for i in instances(url, app) if i["status"] == "running"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


@contextlib.contextmanager
def two_nodes(tmp: Path, kinds: Iterable[str], path: str, **settings: Any) -> Iterator[Cluster]:
    """A JetStream NATS, nodes n1 (with metrics) and n2, and a gateway routing
    ``path.format(kind)`` to a service of its own per kind (``settings``: more gateway
    config). Everything is stopped when the block ends, however it ends."""
    store = tmp / "js"
    with (
        NATSServer(extra_config=f'jetstream {{ store_dir: "{store}" }}') as server,
        Processes(tmp, server.url, check=False) as procs,
    ):
        c = Cluster(server.url, tmp, {}, "", {})
        c.metrics_port = free_port()
        n1 = start_node(c, "n1", "--metrics-addr", f"127.0.0.1:{c.metrics_port}")
        c.nodes["n1"] = procs.add(n1)
        c.nodes["n2"] = procs.add(start_node(c, "n2"))
        c.routes = {k: unique_service(k) for k in kinds}
        routes = [
            {"path": path.format(k), "methods": ["GET"], "service": v} for k, v in c.routes.items()
        ]
        _, c.gateway_url = procs.gateway(routes, **settings)
        yield c


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    kinds = ("web", "logs", "crash", "roll", "rm", "bad", "art")
    with two_nodes(tmp_path_factory.mktemp("node"), kinds, "/{}/who") as c:
        yield c


def deploy(c: Cluster, name: str, *args: str, wait: float = 60) -> str:
    return ok(narun(c.url, "deploy", "--name", name, "--app", APP, "--wait", str(wait), *args))


def test_deploy_answers_through_the_gateway_from_both_nodes(cluster: Cluster) -> None:
    name = cluster.routes["web"]
    out = deploy(cluster, name, "--replicas", "2")
    assert "2 instances running" in out
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=cluster.gateway_url, timeout=10) as client:
        for _ in range(60):
            r = client.get("/web/who")
            assert r.status_code == 200, r.text
            body = r.json()
            seen[body["node"]] += 1
            assert body["leak"] == ""  # the node's own environment stays with the node
    assert set(seen) == {"n1", "n2"}, seen
    table = ok(narun(cluster.url, "apps", "ls"))
    line = next(x for x in table.splitlines() if x.startswith(name))
    assert line.split()[2:4] == ["2", "2"]  # DESIRED RUNNING
    assert "n1,n2" in line
    nodes_table = ok(narun(cluster.url, "nodes", "ls"))
    assert "n1" in nodes_table
    assert "running" in nodes_table
    ops = f"http://127.0.0.1:{cluster.metrics_port}"
    assert httpx.get(f"{ops}/healthz").text == "ok\n"
    metrics = httpx.get(f"{ops}/metrics").text
    n1_instance = next(i for i in running(cluster.url, name) if i["node"] == "n1")
    assert (
        f'narun_node_runner_instance_up{{app_name="{name}",instance_id="{n1_instance["instance_id"]}"'
        f',node_id="n1",run_id="{n1_instance["run_id"]}"}} 1.0'
    ) in metrics


def test_logs_show_the_lines_of_every_instance(cluster: Cluster) -> None:
    name = cluster.routes["logs"]
    deploy(cluster, name, "--replicas", "2", "--env", "LONG_LINE=40000")

    def both() -> str | None:
        out = ok(narun(cluster.url, "logs", name, "-n", "50"))
        want = [f"whoami {name}-0 starting", f"whoami {name}-1 starting", "says hello on stderr"]
        return out if all(w in out for w in want) else None

    out = wait_until(both, 20, "log lines of both instances")
    assert "@n1" in out
    assert "@n2" in out
    assert "[stderr]" in out
    only = ok(narun(cluster.url, "logs", name, "--instance", f"{name}-1"))
    assert f"{name}-0@" not in only
    assert f"{name}-1@" in only
    # 40,000 characters: pieces of 16 KiB, and the stream goes on after them
    pieces = [line.rsplit(" ", 1)[1] for line in only.splitlines() if line.endswith("LLLL")]
    assert [len(p) for p in pieces] == [16384, 16384, 40000 - 2 * 16384]
    assert f"whoami {name}-1 after the long line" in only


def test_a_killed_instance_is_restarted(cluster: Cluster) -> None:
    name = cluster.routes["crash"]
    deploy(cluster, name, "--replicas", "1")
    [first] = running(cluster.url, name)
    updates = _collect(
        cluster.url,
        f"status.{name}.*",
        lambda: os.kill(first["pid"], signal.SIGKILL),
        lambda doc: doc["status"] == "running" and doc["run_id"] != first["run_id"],
    )
    crashed = next(u for u in updates if u["status"] == "crashed")
    assert crashed["run_id"] == first["run_id"]
    assert crashed["exit_code"] == -signal.SIGKILL
    assert crashed["instance_id"] == first["instance_id"]
    assert crashed["node_id"] == first["node"]
    assert "time" in crashed
    assert [u["status"] for u in updates][-2:] == ["starting", "running"]

    def restarted() -> dict[str, Any] | None:
        now = running(cluster.url, name)
        return now[0] if now and now[0]["pid"] != first["pid"] else None

    again = wait_until(restarted, 30, "a new run after kill -9")
    assert again["restarts"] == 1
    assert again["instance_id"] == first["instance_id"]
    with httpx.Client(base_url=cluster.gateway_url, timeout=10) as client:
        assert client.get("/crash/who").json()["run"] == again["run_id"]


def test_rolling_update_under_load_loses_no_request(cluster: Cluster) -> None:
    name = cluster.routes["roll"]
    deploy(cluster, name, "--replicas", "2", "--env", "COLOR=blue")
    before = {i["pid"] for i in running(cluster.url, name)}
    statuses: Counter[int] = Counter()
    colors: Counter[str] = Counter()
    stop = False

    async def load() -> None:
        async with httpx.AsyncClient(base_url=cluster.gateway_url, timeout=15) as client:

            async def worker() -> None:
                while not stop:
                    try:
                        r = await client.get("/roll/who")
                    except httpx.HTTPError:
                        statuses[0] += 1
                        continue
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        colors[r.json()["color"]] += 1

            await asyncio.gather(*(worker() for _ in range(8)))

    async def main() -> subprocess.CompletedProcess[str]:
        nonlocal stop
        task = asyncio.create_task(load())
        await asyncio.sleep(1)
        result = await asyncio.to_thread(
            narun, cluster.url, "deploy", "--name", name, "--app", APP, "--replicas", "2",
            "--env", "COLOR=green", "--wait", "90",
        )  # fmt: skip
        await asyncio.sleep(1)
        stop = True
        await task
        return result

    result = asyncio.run(main())
    ok(result)
    total = sum(statuses.values())
    print(
        f"\nrolling update under load: {total} requests, statuses {dict(statuses)}, {dict(colors)}"
    )
    assert statuses[200] == total, dict(statuses)  # zero failed requests
    assert colors["blue"] > 0
    assert colors["green"] > 0
    after = running(cluster.url, name)
    assert len(after) == 2
    assert {i["pid"] for i in after}.isdisjoint(before)
    wait_until(lambda: not any(alive(p) for p in before), 20, "old runs gone")


def test_apps_rm_stops_everything(cluster: Cluster) -> None:
    name = cluster.routes["rm"]
    deploy(cluster, name, "--replicas", "3")
    three = {i["instance_id"]: i["pid"] for i in running(cluster.url, name)}
    assert len(three) == 3
    deploy(cluster, name, "--replicas", "1")  # scale down: the highest slots go
    wait_until(lambda: len(instances(cluster.url, name)) == 1, 30, "two instances gone")
    assert not alive(three[f"{name}-1"])
    assert not alive(three[f"{name}-2"])
    assert [i["pid"] for i in running(cluster.url, name)] == [three[f"{name}-0"]]
    deploy(cluster, name, "--node", "n2=2")  # pinned: both on n2
    wait_until(
        lambda: (
            sorted(i["node"] for i in running(cluster.url, name)) == ["n2", "n2"]
            and len(instances(cluster.url, name)) == 2
        ),
        30,
        "two instances on n2 only",
    )
    pids = [i["pid"] for i in running(cluster.url, name)]
    ok(narun(cluster.url, "apps", "rm", name, "--wait", "30"))
    wait_until(lambda: not any(alive(p) for p in pids), 20, "every instance process gone")
    assert count_instances(cluster.url, name) == 0
    assert name not in ok(narun(cluster.url, "apps", "ls"))
    assert not [k for k in _kv(cluster.url, "narun-placements") if k.startswith(f"{name}.")]
    again = narun(cluster.url, "apps", "rm", name)
    assert again.returncode == 1
    assert f"no app named {name!r}" in again.stderr


def test_bad_spec_is_refused_before_anything_is_stored(cluster: Cluster) -> None:
    spec = cluster.tmp / "bad.yaml"
    spec.write_text("name: bad-one\napp: x:y\nreplicas: many\nrestart:\n  max_restart: 1\n")
    result = narun(cluster.url, "deploy", "-f", str(spec))
    assert result.returncode == 1
    assert "replicas: must be a whole number >= 0 (got 'many')" in result.stderr
    assert "restart.max_restart: unknown key (did you mean 'max_restarts'?)" in result.stderr
    assert "bad-one" not in _kv_names(cluster.url)


def _kv_names(url: str) -> set[str]:
    async def read() -> set[str]:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value("app-configs")
            try:
                return set(await kv.keys())
            except Exception:
                return set()
        finally:
            await nc.close()

    return set(_in_thread(read))


def test_an_app_that_cannot_run_fails_with_the_reason(cluster: Cluster) -> None:
    name = cluster.routes["bad"]
    spec = cluster.tmp / "missing.yaml"
    spec.write_text(
        json.dumps({"name": name, "app": "no_such_module:app", "restart": QUICK_RESTARTS})
    )
    ok(narun(cluster.url, "deploy", "-f", str(spec)))

    def failed() -> dict[str, Any] | None:
        runs = [i for i in instances(cluster.url, name) if i["status"] == "failed"]
        return runs[0] if runs else None

    run = wait_until(failed, 60, "status failed")
    assert run["restarts"] == 3
    assert run["exit_code"] not in (None, 0)
    assert "gave up after 3 restarts" in run["error"]
    info = ok(narun(cluster.url, "apps", "info", name))
    assert "failed" in info
    assert "no_such_module" in info  # the last lines say why
    ok(narun(cluster.url, "apps", "rm", name))


def test_a_killed_node_s_instances_move_and_do_not_double(cluster: Cluster) -> None:
    name = unique_service("move")
    with Processes(cluster.tmp, cluster.url, check=False) as stack:
        procs = {n: stack.add(start_node(cluster, n, "--label", "pool=move")) for n in ("n3", "n4")}
        try:
            deploy(cluster, name, "--replicas", "1", "--label", "pool=move")
            [first] = running(cluster.url, name)
            victim, other = first["node"], ({"n3", "n4"} - {first["node"]}).pop()
            procs[victim].child.kill()
            procs[victim].wait()
            wait_until(lambda: not alive(first["pid"]), 10, "the dead node's instance ends with it")
            moved = wait_until(
                lambda: [i for i in running(cluster.url, name) if i["node"] == other],
                30,
                "the instance runs on the other node",
            )
            assert moved[0]["instance_id"] == first["instance_id"]
            procs[victim] = stack.add(start_node(cluster, victim, "--label", "pool=move"))
            time.sleep(3)  # several reconcile steps of the returned node
            assert [i["node"] for i in instances(cluster.url, name)] == [other]
            assert count_instances(cluster.url, name) == 1

            # SIGTERM: the node says shutting_down, stops its instance; the other takes over.
            owner = procs[other]
            pid = moved[0]["pid"]
            seen = _watch_states(cluster.url, other, lambda: owner.signal(signal.SIGTERM))
            assert owner.wait() == 0
            assert "shutting_down" in seen
            assert not alive(pid)
            wait_until(
                lambda: [i for i in running(cluster.url, name) if i["node"] == victim],
                30,
                "the instance runs on the remaining node",
            )
        finally:
            narun(cluster.url, "apps", "rm", name)


def _collect(
    url: str, subject: str, act: Callable[[], None], last: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """JSON messages on ``subject`` while ``act()`` runs, up to the one ``last`` accepts."""

    async def watch() -> list[dict[str, Any]]:
        nc = await nats.connect(url)
        docs: list[dict[str, Any]] = []
        try:
            sub = await nc.subscribe(subject)
            await nc.flush()
            act()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=1)
                except nats.errors.TimeoutError:
                    continue
                doc: dict[str, Any] = json.loads(msg.data) if msg.data else {}
                docs.append(doc)
                if last(doc):
                    return docs
            raise AssertionError(f"not seen on {subject} within 30s: {docs}")
        finally:
            await nc.close()

    result: list[dict[str, Any]] = _in_thread(watch)
    return result


def _watch_states(url: str, node_id: str, act: Callable[[], None]) -> list[str]:
    """Statuses of ``node_id`` written to the KV while ``act()`` runs, until it is gone."""
    docs = _collect(url, f"$KV.node-runner-states.{node_id}", act, lambda doc: not doc)
    return [d["status"] for d in docs if d]


def test_deploy_a_project_directory_with_its_dependency(cluster: Cluster) -> None:
    name = cluster.routes["art"]
    project = str(ROOT / "tests" / "node_project")
    args = ["deploy", project, "--name", name, "--app", "whoami:app", "--replicas", "2"]
    out = ok(narun(cluster.url, *args, "--wait", "240"))
    assert "uploaded" in out
    runs = running(cluster.url, name)
    logs = "\n".join(f"--- {n}\n{p.output()[-2000:]}" for n, p in cluster.nodes.items())
    assert {r["node"] for r in runs} == {"n1", "n2"}, logs
    for run in runs:  # each runs in the venv the node built for this artifact's digest
        with open(f"/proc/{run['pid']}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"/venvs/" in argv[0]
        assert argv[0].endswith(b"/venv/bin/python")
    seen: set[str] = set()
    with httpx.Client(base_url=cluster.gateway_url, timeout=10) as client:
        for _ in range(30):
            r = client.get("/art/who")
            assert r.status_code == 200, r.text
            seen.add(r.json()["node"])
    assert seen == {"n1", "n2"}

    # The same object with a digest that is not its own: refused, the reason shown.
    spec = yaml.safe_load(
        ok(narun(cluster.url, "apps", "info", name)).split("\n", 1)[1].split("\n\n")[0]
    )
    bad = unique_service("digest")
    spec["name"] = bad
    spec["replicas"] = 1
    spec["artifact"]["digest"] = "SHA-256=" + "A" * 43 + "="
    path = cluster.tmp / "bad-digest.yaml"
    path.write_text(yaml.safe_dump(spec))
    ok(narun(cluster.url, "deploy", "-f", str(path)))
    failed = wait_until(
        lambda: [i for i in instances(cluster.url, bad) if i["status"] == "failed"],
        30,
        "a failed instance for the wrong digest",
    )
    assert "digest" in failed[0]["error"].lower()
    assert failed[0]["pid"] is None
    ok(narun(cluster.url, "apps", "rm", bad))
    ok(narun(cluster.url, "apps", "rm", name, "--wait", "30"))


def _app_spec(url: str, name: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value("app-configs")
            entry = await kv.get(name)
            spec: dict[str, Any] = yaml.safe_load(entry.value or b"")
            return spec
        finally:
            await nc.close()

    result: dict[str, Any] = _in_thread(read)
    return result


def test_dev_starts_a_node(tmp_path: Path) -> None:
    nats_port, http_port = free_port(), free_port()
    config = tmp_path / "dev.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nats_url": f"nats://127.0.0.1:{nats_port}",
                "server_addr": f"127.0.0.1:{http_port}",
                "metrics_addr": "",
                "routes": [{"path": "/x", "methods": ["GET"], "service": "x"}],
            }
        )
    )
    args = ["dev", "-c", str(config), "--node", "d1", "--data-dir", str(tmp_path / "data")]
    args += ["--node-metrics-port", "0"]
    dev = Proc(args, tmp_path / "dev.log")
    try:
        url = f"nats://127.0.0.1:{nats_port}"
        wait_until(lambda: "d1" in live_nodes(url), 30, "the dev node in the KV", dev)
        # `narun dev` passes signals on once it has printed this (before, SIGTERM kills it)
        wait_until(lambda: "Ctrl-C stops everything." in dev.output(), 20, "dev started", dev)
        assert "node d1" in dev.output()
        assert (tmp_path / "data" / "jetstream").is_dir()
    finally:
        assert dev.stop() == 0, dev.output()
    assert "stopped." in dev.output()


def test_a_nats_server_restart_keeps_instances_running(tmp_path: Path) -> None:
    port = free_port()
    jetstream = f'jetstream {{ store_dir: "{tmp_path / "js"}" }}'
    server = NATSServer(port=port, extra_config=jetstream).start()
    try:
        c = Cluster(server.url, tmp_path, {}, "", {})
        node = start_node(c, "r1", "--node-expiry", "10")
        name = unique_service("restart")
        try:
            deploy(c, name, "--replicas", "1")
            [before] = running(c.url, name)
            server.stop()
            time.sleep(1)
            server = NATSServer(port=port, extra_config=jetstream).start()
            wait_until(lambda: count_instances(c.url, name) == 1, 30, "the instance back on NATS")
            assert alive(before["pid"])
            [after] = wait_until(lambda: running(c.url, name), 30, "the node state back")
            assert (after["pid"], after["run_id"]) == (before["pid"], before["run_id"])
            assert after["restarts"] == 0
            out = deploy(c, name, "--replicas", "2")  # and the node acts on new specs again
            assert "2 instances running" in out
            assert node.alive()
        finally:
            node.stop()
    finally:
        server.stop()


def test_commands_on_a_nats_with_nothing_deployed(tmp_path: Path) -> None:
    jetstream = f'jetstream {{ store_dir: "{tmp_path / "js"}" }}'
    with NATSServer(extra_config=jetstream) as server:
        apps = narun(server.url, "apps", "ls")
        assert apps.returncode == 0
        assert apps.stdout.split() == ["NAME", "VERSION", "DESIRED", "RUNNING", "NODES"]
        nodes = narun(server.url, "nodes", "ls")
        assert nodes.returncode == 0
        assert "(no live node)" in nodes.stderr
        rm = narun(server.url, "apps", "rm", "shop")
        assert rm.returncode == 1
        assert "nothing deployed yet" in rm.stderr
    with NATSServer() as plain:  # no JetStream at all
        deploy = narun(plain.url, "deploy", "--name", "x", "--app", "a:b")
        assert deploy.returncode == 1
        assert "JetStream" in deploy.stderr
        assert "Traceback" not in deploy.stderr
        args = ["node", "--node-id", "x", "--data-dir", str(tmp_path / "x"), "--metrics-addr", ""]
        node = narun(plain.url, *args, timeout=60)
        assert node.returncode == 1
        assert "JetStream" in node.stderr
        assert "Traceback" not in node.stderr
        logs = narun(plain.url, "logs", "shop")
        assert logs.returncode == 1
        assert "JetStream" in logs.stderr


def test_a_node_stops_its_instances_even_when_nats_is_gone(tmp_path: Path) -> None:
    jetstream = f'jetstream {{ store_dir: "{tmp_path / "js"}" }}'
    server = NATSServer(extra_config=jetstream).start()
    try:
        c = Cluster(server.url, tmp_path, {}, "", {})
        node = start_node(c, "g1")
        name = unique_service("gone")
        with stopped_on_error(node):
            deploy(c, name, "--replicas", "1")
            [run] = running(c.url, name)
            server.stop(kill=True)
            began = time.monotonic()
            node.signal(signal.SIGTERM)
            code = node.wait(timeout=60)
            took = time.monotonic() - began
    finally:
        server.stop()
    assert code == 0, node.output()
    assert not alive(run["pid"])
    assert took < 40, f"{took:.1f}s"  # bounded NATS steps, not a hang
