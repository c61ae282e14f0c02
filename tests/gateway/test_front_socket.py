"""The gateway's HTTP/1.1 front, spoken to in raw bytes over TCP.

A real ``narun gateway`` in front of a real consumer (``tests.support.front_apps``) on a
real nats-server. These tests are the contract of the front, whatever serves it: framing,
keep-alive, pipelining, ``Expect: 100-continue``, limits, chunked bodies both ways, HEAD and
204. Smuggling attempts are in ``test_front_socket_smuggling.py``; timeouts, a client
that leaves, shutdown and workers in ``test_front_socket_lifecycle.py``.
"""

from __future__ import annotations

import time

from tests.support.frontstack import FRONT_MAX_HEADER, MAX_BODY, get, post, seen
from tests.support.rawhttp import Conn

# --- keep-alive ------------------------------------------------------------------------


def test_several_requests_on_one_connection(front_port: int) -> None:
    with Conn(front_port) as conn:
        for i in range(3):
            conn.send(post("/echo/ka", b"body %d" % i))
            answer = conn.read_answer()
            assert answer.raw.startswith(b"HTTP/1.1 200 OK\r\n")
            assert answer.body == b"body %d" % i
            assert answer.header("content-length") == str(len(answer.body))
            assert answer.header("connection") is None
        assert conn.nothing_within(0.3)  # still open, nothing extra
        conn.send(get("/echo/ka-last"))
        assert conn.read_answer().status == 200


def test_connection_close_is_honoured(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(post("/echo/close", b"bye", "Connection: close"))
        answer = conn.read_answer()
        assert answer.raw.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.body == b"bye"
        assert answer.header("connection") == "close"
        assert conn.is_closed()


def test_http10_closes_after_the_answer(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(get("/echo/h10", version="1.0"))
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.body == b""
        assert answer.header("transfer-encoding") is None  # no chunked framing for 1.0
        assert conn.is_closed()


def test_http10_keep_alive_is_kept_only_if_the_answer_says_so(front_port: int) -> None:
    # RFC 9112 section 9.3: an HTTP/1.0 connection persists only if the answer carries
    # "Connection: keep-alive"; without it the server must close (today's gateway closes).
    with Conn(front_port) as conn:
        conn.send(get("/echo/h10ka", "Connection: keep-alive", version="1.0"))
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.header("content-length") == "0"
        assert answer.header("transfer-encoding") is None
        if (answer.header("connection") or "").lower() == "keep-alive":
            conn.send(get("/echo/h10ka", "Connection: keep-alive", version="1.0"))
            assert conn.read_answer().status == 200
        else:
            assert conn.is_closed()


# --- pipelining ------------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(front_port: int) -> None:
    batch = b"".join(
        [
            post("/echo/pipe-1", b"first"),
            get("/slow/pipe-2?seconds=0.5"),
            post("/echo/pipe-3", b"x" * 3000),
            b"PUT /echo/pipe-4 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            get("/echo/pipe-5"),
        ]
    )
    with Conn(front_port) as conn:
        started = time.monotonic()
        conn.send(batch)
        answers = [conn.read_answer() for _ in range(5)]
        assert time.monotonic() - started >= 0.45  # the slow one was waited for
        assert [a.status for a in answers] == [200] * 5
        assert [a.body for a in answers] == [b"first", b"slept", b"x" * 3000, b"abcde", b""]
        assert [a.header("x-method") for a in answers] == ["POST", None, "POST", "PUT", "GET"]
        assert conn.nothing_within(0.2)
    assert seen(front_port, "/echo/pipe-") == (4, 4, 0)


def test_pipelined_requests_split_anywhere(front_port: int) -> None:
    batch = post("/echo/split-1", b"one") + post("/echo/split-2", b"two")
    with Conn(front_port) as conn:
        for i in range(0, len(batch), 7):  # 7-byte pieces, straddling every boundary
            conn.send(batch[i : i + 7])
            time.sleep(0.002)
        assert [conn.read_answer().body for _ in range(2)] == [b"one", b"two"]


# --- Expect: 100-continue ------------------------------------------------------------


def test_expect_100_continue_before_the_body(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(
            b"POST /echo/expect HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = conn.read_answer()
        assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.send(b"hello")
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.body == b"hello"


def test_expect_100_continue_over_the_limit_is_413_without_100(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(
            b"POST /echo/small/expect HTTP/1.1\r\nHost: t\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (MAX_BODY + 1)
        )
        answer = conn.read_answer()  # the first answer is final: no 100 was sent
        assert answer.raw.startswith(b"HTTP/1.1 413 ")
        # A client may send the body anyway (RFC 9110 section 10.1.1): the server either
        # closed the connection, or reads that body as a body, never as a request.
        if (answer.header("connection") or "").lower() != "close":
            conn.send(b"G" * (MAX_BODY + 1) + get("/echo/small-after"))
            after = conn.read_answer()
            assert after.status == 200
            assert after.header("x-method") == "GET"
        else:
            assert conn.is_closed()
    assert seen(front_port, "/echo/small/expect") == (0, 0, 0)


def test_body_over_the_route_limit_is_413(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(
            b"POST /echo/small/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % (MAX_BODY + 1)
            + b"y" * (MAX_BODY + 1)
            + b"\r\n0\r\n\r\n"
        )
        assert conn.read_answer().raw.startswith(b"HTTP/1.1 413 ")
    assert seen(front_port, "/echo/small/chunked") == (0, 0, 0)


# --- header limits -------------------------------------------------------------------


def test_header_fields_over_max_header_bytes_are_431(front_port: int) -> None:
    fields = [f"X-Filler-{i}: {'v' * 100}" for i in range(FRONT_MAX_HEADER // 100 + 1)]
    with Conn(front_port) as conn:
        conn.send(get("/echo/big-headers", *fields))
        answer = conn.read_answer()
        assert answer.raw.startswith(b"HTTP/1.1 431 ")
        assert answer.header("connection") == "close"
        assert conn.is_closed()
    assert seen(front_port, "/echo/big-headers") == (0, 0, 0)


def test_many_small_header_fields_within_the_limit_pass(front_port: int) -> None:
    fields = [f"X-F{i}: v" for i in range(200)]  # ~2.2 kB in 200 fields
    with Conn(front_port) as conn:
        conn.send(get("/echo/many-headers", *fields))
        assert conn.read_answer().status == 200


def test_a_huge_header_section_is_refused(front_port: int) -> None:
    # One 2 MB field, far past the limit: 431 too, closed, never forwarded.
    with Conn(front_port) as conn:
        conn.send(get("/echo/huge-headers", "X-Huge: " + "h" * 2_000_000))
        answer = conn.read_answer()
        assert answer.raw.startswith(b"HTTP/1.1 431 ")
        assert conn.is_closed()
    assert seen(front_port, "/echo/huge-headers") == (0, 0, 0)


# --- bodies both ways --------------------------------------------------------------


def test_chunked_request_body_is_reassembled_byte_exact(front_port: int) -> None:
    body = bytes(range(256)) * 40 + b"\r\n0\r\n\r\n"  # framing-like bytes inside data
    pieces = [body[:1], body[1:4000], body[4000:]]
    wire = (
        b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    with Conn(front_port) as conn:
        conn.send(
            b"POST /echo/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
        )
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.body == body
        assert answer.header("x-te") == "-"  # the body reached the app whole, unframed
        assert conn.nothing_within(0.2)


def test_streamed_response_is_chunked_to_an_http11_client(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(get("/stream/chunked?n=3"))
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.header("transfer-encoding") == "chunked"
        assert answer.header("content-length") is None
        assert answer.body == b"part 0\npart 1\npart 2\n"
        assert answer.raw.endswith(b"\r\n0\r\n\r\n")
        conn.send(get("/echo/after-stream"))  # the connection is reusable
        assert conn.read_answer().status == 200


def test_head_has_no_body_bytes_on_the_wire(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(b"HEAD /echo/head HTTP/1.1\r\nHost: t\r\n\r\n" + get("/echo/after-head"))
        head = conn.read_answer(head_only=True)
        assert head.status == 200
        after = conn.read_answer()  # would not parse if HEAD had sent body bytes
        assert after.status == 200
        assert after.header("x-method") == "GET"
        assert conn.pending() == b""


def test_204_has_no_body_and_no_length(front_port: int) -> None:
    with Conn(front_port) as conn:
        conn.send(get("/empty/one") + get("/echo/after-204"))
        empty = conn.read_answer()
        assert empty.raw.startswith(b"HTTP/1.1 204 No Content\r\n")
        assert empty.raw.endswith(b"\r\n\r\n")
        assert empty.header("transfer-encoding") is None
        assert empty.header("content-length") in (None, "0")
        after = conn.read_answer()
        assert after.status == 200
        assert conn.pending() == b""
