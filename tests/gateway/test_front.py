"""The gateway's HTTP front on a fake connection: which requests take the fast path, and
that the answers are whole, ordered and as strict as uvicorn's (see fuzz.front_harness)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from fuzz.front_harness import Harness, check
from narun.gateway.forward import error_answer, response_fields
from narun.protocol.bhttp import Response


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.loop.close()


def answers(written: bytes) -> list[bytes]:
    """The status lines in ``written``."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", written)


def test_a_plain_get_is_served_fast_with_one_whole_answer(harness: Harness) -> None:
    _, transport = harness.run([b"GET /a/x HTTP/1.1\r\nHost: gw\r\nX-Request-ID: rid-1\r\n\r\n"])
    assert (harness.front.fast, harness.front.handed_over) == (1, 0)
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-length: 2" in head
    assert b"\r\nx-request-id: rid-1" in head
    assert body == b"ok"
    assert b"connection: close" not in head


def test_pipelined_fast_and_handed_over_requests_answer_in_order(harness: Harness) -> None:
    raw = (
        b"POST /a/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /a/2 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
        b"GET /missing HTTP/1.1\r\nHost: gw\r\n\r\n"
        b"GET /a/4 HTTP/1.1\r\nHost: gw\r\n\r\n"
    )
    _, transport = harness.run([raw])
    assert answers(bytes(transport.written)) == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
    ]
    assert (harness.front.fast, harness.front.handed_over) == (2, 2)
    assert harness.requester.sent == 3


def test_body_in_a_later_read_still_goes_fast(harness: Harness) -> None:
    raw = b"POST /a/1 HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
    _, transport = harness.run([raw[:-2], raw[-2:]])
    assert answers(bytes(transport.written)) == [b"HTTP/1.1 200 OK"]
    assert harness.front.fast == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        b"POST /a/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"GET /a/ HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n",
        b"POST /a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    ],
    ids=["cl-and-te", "two-lengths", "obs-fold", "bad-chunk-size"],
)
def test_smuggling_shapes_are_refused_and_never_forwarded(harness: Harness, raw: bytes) -> None:
    _, transport = harness.run([raw])
    assert harness.requester.sent == 0
    assert bytes(transport.written).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed


def test_http_1_0_is_answered_then_closed(harness: Harness) -> None:
    _, transport = harness.run([b"GET /a/ HTTP/1.0\r\n\r\n"])
    assert b"\r\nconnection: close\r\n" in bytes(transport.written)
    assert transport.closed
    assert harness.front.fast == 1


def test_head_answer_has_no_body(harness: Harness) -> None:
    _, transport = harness.run([b"HEAD /a/ HTTP/1.1\r\n\r\n"])
    assert bytes(transport.written).endswith(b"\r\n\r\n")
    assert harness.front.fast == 1


def test_expect_100_continue_is_handed_over(harness: Harness) -> None:
    _, transport = harness.run(
        [b"POST /a/ HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n", b"ok"]
    )
    written = bytes(transport.written)
    assert written.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert (harness.front.fast, harness.front.handed_over) == (0, 1)


def test_edge_refusals_are_the_asgi_paths(harness: Harness) -> None:
    big = b"x" * 5000
    _, transport = harness.run([b"GET /a/ HTTP/1.1\r\nX-Big: " + big + b"\r\n\r\n"])
    assert bytes(transport.written).startswith(b"HTTP/1.1 431 ")
    _, transport = harness.run([b"PUT /b HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + b"y" * 100])
    assert bytes(transport.written).startswith(b"HTTP/1.1 413 ")
    assert harness.front.fast == 0
    assert harness.requester.sent == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /a/\x00 HTTP/1.1\r\n\r\n",
        b"GET /a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET",
        b"POST /a/ HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"\r\n\r\nGET /a/ HTTP/1.1\r\n\r\n",
        b"GET http://x/a/ HTTP/1.1\r\n\r\n",
    ],
)
def test_odd_inputs_hold_the_fuzz_properties(raw: bytes) -> None:
    for split in (0, 3, 17):
        check(raw, split)


def test_response_fields_apply_the_body_rules() -> None:
    rid = (b"x-request-id", b"r")
    response = Response(
        status=200, headers=((b"content-length", b"5"), (b"connection", b"x")), content=b"hello"
    )
    assert response_fields("HEAD", response, rid) == (
        200,
        [(b"content-length", b"5"), rid],
        b"",
    )
    assert response_fields("GET", response, rid) == (
        200,
        [(b"content-length", b"5"), rid],
        b"hello",
    )
    no_content = Response(status=204, headers=(), content=b"stray")
    assert response_fields("GET", no_content, rid) == (204, [rid], b"")


def test_error_answer_says_retry_after_on_503() -> None:
    rid = (b"x-request-id", b"r")
    fields, body = error_answer(503, "No backend service available", rid)
    assert (b"retry-after", b"1") in fields
    assert body == b"No backend service available\n"
    fields, _ = error_answer(504, "x", rid)
    assert (b"retry-after", b"1") not in fields


def test_a_failure_inside_the_fast_path_is_a_500_and_a_closed_connection(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("narun.gateway.front.to_bhttp", broken)
    _, transport = harness.run([b"GET /a/ HTTP/1.1\r\n\r\nGET /a/ HTTP/1.1\r\n\r\n"])
    assert answers(bytes(transport.written)) == [b"HTTP/1.1 500 Internal Server Error"]
    assert b"connection: close" in bytes(transport.written)
    assert transport.closed
    assert harness.requester.sent == 0
