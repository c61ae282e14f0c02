"""``narun services`` against real consumers on a real nats-server.

Two instances of one service get a known number of requests (some of which make the app
raise), then the CLI must report exactly those numbers; a fake responder stands in for a
Go service, to prove Go-shaped documents are read too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.cli.main import main
from narun.protocol.bhttp import Request, decode_response, encode_request
from narun.protocol.micro import parse_stats
from tests.support import Processes, free_port, unique_service

APP = "tests.support.apps:asgi_app"
OK = 7
BOOM = 3
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also while a test's event loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def send_requests(nats_url: str, service: str) -> list[int]:
    """OK echo requests and BOOM failing ones, over NATS as Binary HTTP; the statuses."""
    nc = await nats.connect(nats_url)
    try:
        statuses = []
        for path in ["/echo/x"] * OK + ["/boom"] * BOOM:
            payload = encode_request(Request(method="GET", scheme="http", authority="x", path=path))
            reply = await nc.request(service, payload, timeout=10)
            statuses.append(decode_response(reply.data).status)
        return statuses
    finally:
        await nc.close()


async def raw_documents(nats_url: str, subject: str, wait: float = 0.5) -> list[dict[str, Any]]:
    """Every non-empty reply to ``subject``, as JSON (no narun parsing in between)."""
    nc = await nats.connect(nats_url)
    try:
        found: list[dict[str, Any]] = []

        async def collect(msg: Msg) -> None:
            if msg.data:
                found.append(json.loads(msg.data))

        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=collect)
        await nc.publish(subject, b"", reply=inbox)
        await asyncio.sleep(wait)
        return found
    finally:
        await nc.close()


@dataclass
class Deployed:
    name: str
    nats_url: str


@pytest.fixture(scope="module")
def deployed(nats_url: str, logs: Path) -> Iterator[Deployed]:
    """Two instances of one service that answered OK + BOOM requests between them."""
    name = unique_service("stats")
    with Processes(logs, nats_url) as procs:
        procs.consumer(APP, name)
        procs.consumer(APP, name, instances_before=1)
        assert run(send_requests(nats_url, name)) == [200] * OK + [500] * BOOM
        yield Deployed(name, nats_url)


def cli(nats_url: str, *args: str) -> Result:
    """``narun services ARGS`` in-process, collecting replies for half a second."""
    return CliRunner().invoke(
        main,
        ["services", *args, "--nats-url", nats_url, "--timeout", "0.5"],
        catch_exceptions=False,
    )


def cli_json(nats_url: str, *args: str) -> Any:
    result = cli(nats_url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def rows_of(output: str, first_cell: str) -> list[list[str]]:
    """Whitespace-split table rows whose first cell is ``first_cell``."""
    return [line.split() for line in output.splitlines() if line.split()[:1] == [first_cell]]


# --- our consumers ---------------------------------------------------------------------


def test_ls_counts_two_instances(deployed: Deployed) -> None:
    result = cli(deployed.nats_url, "ls")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["NAME", "VERSION", "INSTANCES", "DESCRIPTION"]
    assert rows_of(result.stdout, deployed.name) == [[deployed.name, "0.1.0", "2"]]


def test_ls_json(deployed: Deployed) -> None:
    rows = [r for r in cli_json(deployed.nats_url, "ls") if r["name"] == deployed.name]
    assert rows == [
        {"name": deployed.name, "versions": ["0.1.0"], "instances": 2, "description": ""}
    ]


def test_stats_json_has_exact_counts(deployed: Deployed) -> None:
    docs = cli_json(deployed.nats_url, "stats", deployed.name)
    assert len(docs) == 2
    assert len({d["id"] for d in docs}) == 2
    endpoints = [e for d in docs for e in d["endpoints"]]
    assert [(e["name"], e["subject"], e["queue_group"]) for e in endpoints] == [
        ("handler", deployed.name, "q")
    ] * 2
    assert sum(e["num_requests"] for e in endpoints) == OK + BOOM
    assert sum(e["num_errors"] for e in endpoints) == BOOM
    for e in endpoints:
        if e["num_requests"]:
            assert e["processing_time"] > 0
            assert e["average_processing_time"] == e["processing_time"] // e["num_requests"]
        assert e["last_error"] == ("HTTP 500" if e["num_errors"] else "")
    now = datetime.now(UTC)
    for d in docs:
        started = datetime.fromisoformat(d["started"])
        assert now - timedelta(minutes=10) < started < now


def test_consumer_sends_started_as_utc_rfc3339_with_nanoseconds(deployed: Deployed) -> None:
    docs = run(raw_documents(deployed.nats_url, f"$SRV.STATS.{deployed.name}"))
    assert len(docs) == 2
    for doc in docs:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", doc["started"])
        assert parse_stats(doc).id == doc["id"]


def test_stats_table_rows_and_totals(deployed: Deployed) -> None:
    result = cli(deployed.nats_url, "stats", deployed.name)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{deployed.name} service statistics"
    header = "ID  ENDPOINT  REQUESTS  ERRORS  PROCESSING TIME  AVERAGE TIME  QUEUE GROUP  STARTED"
    assert " ".join(lines[2].split()) == " ".join(header.split()) + " (UTC)"
    ids = {d["id"] for d in cli_json(deployed.nats_url, "stats", deployed.name)}
    rows = [line.split() for line in lines[3:-2]]
    assert {row[0] for row in rows} == ids
    assert all(row[1] == "handler" and row[6] == "q" for row in rows)
    assert sum(int(row[2]) for row in rows) == OK + BOOM
    assert sum(int(row[3]) for row in rows) == BOOM
    assert set(lines[-2]) == {"-"}
    totals = lines[-1].split()
    assert totals[:2] == [str(OK + BOOM), str(BOOM)]
    assert re.fullmatch(r"[0-9.]+(ns|µs|ms|s)", totals[2])


def test_info_lists_every_instance_and_endpoint(deployed: Deployed) -> None:
    docs = cli_json(deployed.nats_url, "info", deployed.name)
    assert len({d["id"] for d in docs}) == 2
    for d in docs:
        assert d["type"] == "io.nats.micro.v1.info_response"
        assert d["endpoints"] == [
            {"name": "handler", "subject": deployed.name, "queue_group": "q", "metadata": {}}
        ]
    result = cli(deployed.nats_url, "info", deployed.name)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Service {deployed.name}: 2 instances\n")
    for d in docs:
        assert f"Instance {d['id']}" in result.stdout
    assert rows_of(result.stdout, "handler") == [["handler", deployed.name, "q"]] * 2


def test_ping_by_name_and_all(deployed: Deployed) -> None:
    result = cli(deployed.nats_url, "ping", deployed.name)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["ID", "NAME", "VERSION", "RTT"]
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[1:3] for row in rows] == [[deployed.name, "0.1.0"]] * 2
    pongs = [p for p in cli_json(deployed.nats_url, "ping") if p["name"] == deployed.name]
    assert len(pongs) == 2
    assert all(p["rtt_ns"] > 0 for p in pongs)
    assert {p["id"] for p in pongs} == {row[0] for row in rows}


# --- a service written in Go (its documents, from a fake responder) --------------------


def go_documents(name: str) -> dict[str, bytes]:
    base = f'"name":"{name}","id":"GoInstance1","version":"2.0.0"'
    return {
        "PING": (f'{{{base},"metadata":null,"type":"io.nats.micro.v1.ping_response"}}').encode(),
        "INFO": (
            f'{{{base},"metadata":null,"type":"io.nats.micro.v1.info_response",'
            f'"description":"Hello from Go","endpoints":[{{"name":"handler",'
            f'"subject":"{name}","queue_group":"q","metadata":null}}]}}'
        ).encode(),
        "STATS": (
            f'{{{base},"metadata":{{}},"type":"io.nats.micro.v1.stats_response",'
            f'"endpoints":[{{"name":"handler","subject":"{name}","queue_group":"q",'
            f'"num_requests":24697,"num_errors":0,"last_error":"","data":null,'
            f'"processing_time":244000000,"average_processing_time":9879}}],'
            f'"started":"2025-03-04T05:06:07.123456789Z"}}'
        ).encode(),
    }


async def fake_go_service(nc: Client, name: str) -> None:
    docs = go_documents(name)
    for verb, doc in docs.items():

        def answer(doc: bytes) -> Any:
            async def reply(msg: Msg) -> None:
                await msg.respond(doc)

            return reply

        await nc.subscribe(f"$SRV.{verb}", cb=answer(doc))
        await nc.subscribe(f"$SRV.{verb}.{name}", cb=answer(doc))
    await nc.flush()


@pytest.fixture
async def go_service(nats_url: str) -> Any:
    name = unique_service("go")
    nc = await nats.connect(nats_url)
    await fake_go_service(nc, name)
    yield name
    await nc.close()


async def cli_async(nats_url: str, *args: str) -> Result:
    """The CLI from an async test: in a thread, since it runs its own event loop."""
    return await asyncio.to_thread(cli, nats_url, *args)


async def test_go_service_is_listed(nats_url: str, go_service: str) -> None:
    result = await cli_async(nats_url, "ls")
    assert result.exit_code == 0, result.output
    assert rows_of(result.stdout, go_service) == [[go_service, "2.0.0", "1", "Hello", "from", "Go"]]


async def test_go_service_stats(nats_url: str, go_service: str) -> None:
    result = await cli_async(nats_url, "stats", go_service)
    assert result.exit_code == 0, result.output
    assert rows_of(result.stdout, "GoInstance1") == [
        ["GoInstance1", "handler", "24,697", "0", "244ms", "9.9µs", "q", "2025-03-04", "05:06:07"]
    ]
    assert result.stdout.splitlines()[-1].split() == ["24,697", "0", "244ms", "9.9µs"]
    result = await cli_async(nats_url, "stats", go_service, "--json")
    (doc,) = json.loads(result.stdout)
    assert doc["started"] == "2025-03-04T05:06:07.123456000Z"
    assert doc["endpoints"][0]["processing_time"] == 244_000_000
    assert "data" not in doc["endpoints"][0]  # null data is left out


async def test_go_service_info_and_ping(nats_url: str, go_service: str) -> None:
    result = await cli_async(nats_url, "info", go_service)
    assert result.exit_code == 0, result.output
    assert "Description:  Hello from Go" in result.stdout
    assert "Metadata:     -" in result.stdout
    result = await cli_async(nats_url, "ping", go_service)
    assert rows_of(result.stdout, "GoInstance1")[0][1:3] == [go_service, "2.0.0"]


async def test_malformed_reply_is_reported_and_skipped(nats_url: str, go_service: str) -> None:
    nc = await nats.connect(nats_url)

    async def garbage(msg: Msg) -> None:
        await msg.respond(b"this is not json")

    try:
        await nc.subscribe(f"$SRV.INFO.{go_service}", cb=garbage)
        await nc.flush()
        result = await cli_async(nats_url, "info", go_service)
    finally:
        await nc.close()
    assert result.exit_code == 0, result.output
    assert "warning: ignored a malformed reply: not JSON" in result.stderr
    assert "Instance GoInstance1" in result.stdout


# --- failures --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["info", "stats", "ping"])
def test_unknown_service_exits_1_quickly(nats_url: str, command: str) -> None:
    name = unique_service("absent")
    started = time.monotonic()
    result = CliRunner().invoke(
        main, ["services", command, name, "--nats-url", nats_url, "--timeout", "10"]
    )
    assert result.exit_code == 1
    assert f"no service named '{name}' answered within 10s" in result.stderr
    assert result.stdout == ""
    # Nobody subscribed: the server says so at once, no need to wait for the timeout.
    assert time.monotonic() - started < 5


def test_invalid_service_name_is_a_usage_error(nats_url: str) -> None:
    result = cli(nats_url, "stats", "a.b")
    assert result.exit_code == 2
    assert "invalid service name 'a.b'" in result.stderr


def test_unreachable_nats_is_one_clean_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    proc = subprocess.run(
        [sys.executable, "-m", "narun", "services", "ls", "--nats-url", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"Error: cannot connect to NATS at {url}: ")
    assert proc.stderr.count("\n") == 1  # one line, no traceback
