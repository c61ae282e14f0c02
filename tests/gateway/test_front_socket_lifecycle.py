"""The gateway's HTTP front over time, in raw bytes: slow clients, clients that leave,
graceful shutdown and ``--workers``.

Bounds on time are generous (the machine is shared); each asserts "within N seconds, not a
hang" or "not before the timeout", never a speed.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.support import Proc, Processes, free_port, unique_service, wait_for_port, write_config
from tests.support.frontstack import (
    APP,
    FRONT_HEADER_TIMEOUT,
    FRONT_ROUTE_TIMEOUT,
    front_stack,
    get,
    post,
    seen,
)
from tests.support.rawhttp import Conn


def closed_after(conn: Conn, limit: float = 5.0) -> float:
    """Seconds until the gateway closes ``conn`` having sent nothing (fails on bytes)."""
    started = time.monotonic()
    assert conn.is_closed(limit), f"still open after {limit} s"
    return time.monotonic() - started


# --- slow clients --------------------------------------------------------------------


def test_trickled_headers_are_cut_off_at_the_header_timeout(front_port: int) -> None:
    with Conn(front_port) as conn:
        started = time.monotonic()
        conn.send(b"GET /echo/slowloris HTTP/1.1\r\nHost: t\r\n")
        cut = False
        for _ in range(40):  # a header byte every 0.1 s: 4 s, far past the timeout
            try:
                conn.send(b"X")
            except OSError:
                cut = True
                break
            if not conn.nothing_within(0.1):
                cut = True
                break
        elapsed = time.monotonic() - started
        assert cut
        assert conn.pending() == b""  # closed without an answer
    assert FRONT_HEADER_TIMEOUT * 0.9 < elapsed < FRONT_HEADER_TIMEOUT + 1.5
    assert seen(front_port, "/echo/slowloris") == (0, 0, 0)


def test_a_silent_connection_is_closed_at_the_header_timeout(front_port: int) -> None:
    with Conn(front_port) as conn:
        elapsed = closed_after(conn)
    assert FRONT_HEADER_TIMEOUT * 0.9 < elapsed < FRONT_HEADER_TIMEOUT + 1.5


def test_a_slow_body_gets_408_at_the_route_timeout(front_port: int) -> None:
    with Conn(front_port) as conn:
        started = time.monotonic()
        conn.send(b"POST /echo/slow-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        answer = conn.read_answer()  # the other 7 bytes do not come in time
        elapsed = time.monotonic() - started
        assert answer.raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert answer.body == b"Request body not received in time\n"
        # Either the connection is closed, or the 7 bytes are still read as that body,
        # never as the start of a request: the next request is served.
        if (answer.header("connection") or "").lower() == "close":
            assert conn.is_closed()
        else:
            conn.send(b"GGGGGGG" + get("/echo/after-slow-body"))
            after = conn.read_answer()
            assert after.status == 200
            assert after.header("x-method") == "GET"
    assert FRONT_ROUTE_TIMEOUT * 0.9 < elapsed < FRONT_ROUTE_TIMEOUT + 1.5
    assert seen(front_port, "/echo/slow-body") == (0, 0, 0)  # never forwarded


def test_a_stalled_chunked_upload_gets_504_at_the_route_timeout(front_port: int) -> None:
    # A chunked body of unknown length is streamed to the consumer as it comes, so the
    # route timeout runs out while waiting for the consumer's answer: 504, and the
    # consumer never saw the body whole.
    with Conn(front_port) as conn:
        started = time.monotonic()
        conn.send(
            b"POST /echo/slow-chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1\r\na\r\n"
        )
        answer = conn.read_answer()
        elapsed = time.monotonic() - started
        assert answer.raw.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
        assert answer.body == b"Request timed out waiting for backend service\n"
    assert FRONT_ROUTE_TIMEOUT * 0.9 < elapsed < FRONT_ROUTE_TIMEOUT + 1.5
    assert seen(front_port, "/echo/slow-chunked") == (1, 0, 0)


# --- clients that leave --------------------------------------------------------------


def wait_seen(port: int, prefix: str, field: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while getattr(seen(port, prefix), field) == 0:
        assert time.monotonic() < deadline, f"{prefix}: no {field} within {within} s"
        time.sleep(0.05)


def test_client_closing_mid_request_cancels_the_consumers_work(front_port: int) -> None:
    conn = Conn(front_port)
    conn.send(get("/hold/left"))
    wait_seen(front_port, "/hold/left", "requests")
    conn.close()
    wait_seen(front_port, "/hold/left", "cancelled")
    assert seen(front_port, "/hold/left") == (1, 1, 1)


def test_client_closing_mid_body_forwards_nothing_whole(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(b"POST /echo/half HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"h" * 10)
        time.sleep(0.2)
    with Conn(front_port) as conn:  # the gateway serves on, promptly
        conn.send(post("/echo/after-half", b"ok"))
        assert conn.read_answer(timeout=3).body == b"ok"
    assert seen(front_port, "/echo/half").whole == 0


# --- graceful shutdown ---------------------------------------------------------------


def connect_refused(gw_port: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", gw_port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_finishes_in_flight_closes_idle_and_refuses_new(nats_url: str, logs: Path) -> None:
    with Processes(logs, nats_url) as procs:
        gw_port = front_stack(procs, timeout=10)
        gateway = procs.procs[-1]
        with Conn(gw_port) as idle, Conn(gw_port) as busy:
            idle.send(get("/echo/before-term"))
            assert idle.read_answer().status == 200  # now an idle keep-alive connection
            busy.send(get("/slow/in-flight?seconds=1.5"))
            wait_seen(gw_port, "/slow/in-flight", "requests")
            gateway.signal(signal.SIGTERM)
            assert closed_after(idle) < 3  # closed without a byte, long before the slow one
            assert connect_refused(gw_port)  # the listener is gone
            answer = busy.read_answer()
            assert answer.status == 200
            assert answer.body == b"slept"
            assert busy.is_closed()  # nothing more is served on it
        assert gateway.wait(20) == 0, gateway.output()


# --- workers -------------------------------------------------------------------------


def _socket_owner(pids: list[int], local_port: int, peer_port: int) -> int | None:
    """Which of ``pids`` holds the gateway's end of the TCP connection from ``peer_port``."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            cols = line.split()
            if cols[1] == f"0100007F:{local_port:04X}" and cols[2] == f"0100007F:{peer_port:04X}":
                inode = cols[9]
    if inode is None:
        return None
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _listeners(local_port: int) -> int:
    """Listening sockets on 127.0.0.1:``local_port`` (one per worker, SO_REUSEPORT)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(r[1] == f"0100007F:{local_port:04X}" and r[3] == "0A" for r in rows)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT")
def test_two_workers_each_serve_a_raw_request(nats_url: str, logs: Path) -> None:
    service = unique_service("front-workers")
    with Processes(logs, nats_url) as procs:
        procs.consumer(APP, service)
        gw_port = free_port()
        config = {
            "nats_url": nats_url,
            "server_addr": f"127.0.0.1:{gw_port}",
            "metrics_addr": "",
            "routes": [{"path": "/", "methods": ["GET", "POST"], "service": service}],
        }
        path = write_config(logs, config)
        gateway = procs.add(
            Proc(["gateway", "-c", str(path), "--workers", "2"], logs / f"{path.stem}.log")
        )
        wait_for_port(gw_port, gateway)
        deadline = time.monotonic() + 20
        while len(workers := _children(gateway.pid)) < 2 or _listeners(gw_port) < 2:
            assert time.monotonic() < deadline, gateway.output()
            time.sleep(0.1)
        conns: dict[int, Conn] = {}
        spare: list[Conn] = []
        try:
            for _ in range(64):  # new connections until each worker holds one
                conn = Conn(gw_port)
                conn.send(get("/echo/which"))  # served by whoever accepted it
                assert conn.read_answer().status == 200
                owner = _socket_owner(workers, gw_port, conn.sock.getsockname()[1])
                assert owner in workers
                if owner in conns:
                    spare.append(conn)
                else:
                    conns[owner] = conn
                if len(conns) == 2:
                    break
            assert set(conns) == set(workers), "the kernel gave every connection to one worker"
            for pid, conn in conns.items():
                conn.send(post(f"/echo/worker-{pid}", str(pid).encode()))
                answer = conn.read_answer()
                assert answer.status == 200
                assert answer.body == str(pid).encode()
        finally:
            for conn in [*conns.values(), *spare]:
                conn.close()
