"""Cold start from zero: time from a request to its answer when no instance runs.

Starts a JetStream nats-server, one ``narun node``, a gateway, and deploys the small FastAPI
app of the node tests (``tests.node_project.whoami:app``, from the node's own environment,
so the "venv" is already built) with ``min_replicas: 0``. Each run waits until the app is
back at zero (``idle_seconds``), then times one ``GET`` through the gateway.

    python -m bench.coldstart --runs 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import yaml

from bench.procs import free_port
from narun.supervise import Child
from narun.transport.server import NATSServer

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "coldstart"


async def _answers(url: str, service: str) -> bool:
    nc = await nats.connect(url)
    try:
        await nc.request(f"$SRV.PING.{service}", b"", timeout=0.5)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return False
    finally:
        await nc.close()
    return True


def _process_start(url: str, tmp: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``narun serve`` of the same app to its first PING answer."""
    started = time.perf_counter()
    child = _narun(
        "serve", "tests.node_project.whoami:app", "--service", "baseline", "--nats-url", url,
        log=tmp / "baseline.log", env=env,
    )  # fmt: skip
    try:
        while not asyncio.run(_answers(url, "baseline")):
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        child.stop()


async def _gone(url: str) -> bool:
    nc = await nats.connect(url)
    try:
        await nc.request(f"$SRV.PING.{SERVICE}", b"", timeout=0.5)
    except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
        return True
    finally:
        await nc.close()
    return False


def _narun(*args: str, log: Path, env: dict[str, str]) -> Child:
    return Child.start([sys.executable, "-m", "narun", *args], env=env, output=log, cwd=ROOT)


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--idle", type=float, default=2.0, help="idle_seconds of the app")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="narun-coldstart-"))
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    store = tmp / "js"
    with NATSServer(extra_config=f'jetstream {{ store_dir: "{store}" }}') as server:
        node = _narun(
            "node",
            "--node-id",
            "n1",
            "--data-dir",
            str(tmp / "n1"),
            "--nats-url",
            server.url,
            "--pass-env",
            "PYTHONPATH",
            "--metrics-addr",
            "",
            log=tmp / "node.log",
            env=env,
        )
        port = free_port()
        config = {
            "nats_url": server.url,
            "server_addr": f"127.0.0.1:{port}",
            "metrics_addr": "",
            "request_timeout_seconds": 30,
            "wake_timeout_seconds": 20,
            "routes": [{"path": "/c/", "methods": ["GET"], "service": SERVICE}],
        }
        (tmp / "gw.yaml").write_text(yaml.safe_dump(config))
        gateway = _narun("gateway", "-c", str(tmp / "gw.yaml"), log=tmp / "gw.log", env=env)
        try:
            gateway.wait_for_port(port)
            spec = {
                "name": SERVICE,
                "app": "tests.node_project.whoami:app",
                "min_replicas": 0,
                "max_replicas": 1,
                "idle_seconds": args.idle,
            }
            (tmp / "app.yaml").write_text(yaml.safe_dump(spec))
            time.sleep(2)  # the node's first heartbeat
            deploy = _narun(
                "deploy", "-f", str(tmp / "app.yaml"), "--nats-url", server.url,
                log=tmp / "deploy.log", env=env,
            )  # fmt: skip
            if deploy.wait(60) != 0:
                raise SystemExit((tmp / "deploy.log").read_text())
            times, baseline = [], []
            for _ in range(args.runs):
                baseline.append(_process_start(server.url, tmp, env))
                while not asyncio.run(_gone(server.url)):
                    time.sleep(0.2)
                time.sleep(1.0)  # the stopped instance's slot is released too
                started = time.perf_counter()
                answer = httpx.get(f"http://127.0.0.1:{port}/c/who", timeout=60)
                seconds = time.perf_counter() - started
                if answer.status_code != 200:
                    raise SystemExit(f"answer {answer.status_code}: {answer.text}")
                times.append(seconds)
                print(f"cold start {seconds:.3f}s", flush=True)
            for label, values in (("cold start", times), ("narun serve alone", baseline)):
                values.sort()
                print(
                    f"{label}: runs {len(values)}  p50 {statistics.median(values):.3f}s  "
                    f"min {values[0]:.3f}s  max {values[-1]:.3f}s"
                )
        finally:
            gateway.stop()
            node.stop()


if __name__ == "__main__":
    main()
