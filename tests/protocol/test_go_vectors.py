"""Golden vectors: Binary HTTP messages byte for byte as Go narun writes them.

Go narun (narun-gw, nconsumer) uses the openpcc/bhttp library's zero-value encoders.
The bytes below are worked out from that library's source and net/http's request
mapping (see docs/protocol.md, *Shapes a peer must accept*). ``tests/goshaped.py``,
which plays the Go peer in the end-to-end tests, must build exactly these bytes.
"""

from __future__ import annotations

import pytest

from narun.consumer.http.asgi import build_scope
from narun.errors import BinaryHTTPError
from narun.protocol import bhttp
from tests.support import goshaped

# curl 'http://localhost:8080/search?q=café' through narun-gw: the query's UTF-8 passes
# through raw (Go escapes the path, never the query); GET without body: no content-length.
GO_GET_RAW_UTF8_QUERY = (
    b"\x00"
    + b"\x03GET"
    + b"\x00"
    + b"\x0elocalhost:8080"
    + b"\x0f/search?q=caf\xc3\xa9"
    + b"\x21"
    + b"\x06accept\x03*/*"
    + b"\x0auser-agent\x0acurl/8.5.0"
    + b"\x00"
    + b"\x00"
)

# An empty POST (Content-Length: 0): known length, and still a content-length line.
GO_EMPTY_POST = (
    b"\x00\x04POST\x00\x0elocalhost:8080\x05/echo" + b"\x11\x0econtent-length\x010" + b"\x00\x00"
)

# A chunked POST (the client sent no length): indeterminate framing 2, no content-length,
# content in chunks, then the (empty) trailer section.
GO_CHUNKED_POST = (
    b"\x02\x04POST\x00\x0elocalhost:8080\x05/echo"
    + b"\x0ccontent-type\x0atext/plain"
    + b"\x00"
    + b"\x0bhello world"
    + b"\x00"
    + b"\x00"
)

# nconsumer's reply with an empty body: known length (1) with content-length: 0.
GO_EMPTY_REPLY = b"\x01\x40\xc8" + b"\x11\x0econtent-length\x010" + b"\x00" + b"\x00"

# nconsumer's reply "Hello, World!": indeterminate (3); the library probes one byte, so
# the first chunk is 1 byte long; then the rest (chunks up to 4094 bytes); no
# content-length line; the empty trailer section.
GO_TEXT_REPLY = (
    b"\x03\x40\xc8"
    + b"\x0ccontent-type\x19text/plain; charset=utf-8"
    + b"\x00"
    + b"\x01H"
    + b"\x0cello, World!"
    + b"\x00"
    + b"\x00"
)


def test_raw_utf8_query_from_a_go_gateway_is_accepted() -> None:
    request = bhttp.decode_request(GO_GET_RAW_UTF8_QUERY)
    assert request.method == "GET"
    assert request.scheme == ""
    assert request.authority == "localhost:8080"
    assert request.path.encode("latin-1") == b"/search?q=caf\xc3\xa9"  # the bytes received
    assert request.headers == ((b"accept", b"*/*"), (b"user-agent", b"curl/8.5.0"))
    assert bhttp.encode_request(request) == GO_GET_RAW_UTF8_QUERY


def test_raw_utf8_target_reaches_the_asgi_scope_as_received() -> None:
    path = "/caf\xc3\xa9/x%20y?q=caf\xc3\xa9&r=%C3%A9"  # raw and escaped UTF-8 mixed
    scope = build_scope(bhttp.Request("GET", "", "localhost", path))
    assert scope["raw_path"] == b"/caf\xc3\xa9/x%20y"
    assert scope["path"] == "/café/x y"
    assert scope["query_string"] == b"q=caf\xc3\xa9&r=%C3%A9"


def test_raw_bytes_that_are_not_utf8_stay_recoverable_in_the_path() -> None:
    scope = build_scope(bhttp.Request("GET", "", "", "/a\xff%FE"))
    assert scope["raw_path"] == b"/a\xff%FE"
    assert scope["path"].encode("utf-8", "surrogateescape") == b"/a\xff\xfe"


def test_method_scheme_and_authority_stay_ascii() -> None:
    bad = b"\x00\x03G\xc3T\x00\x00\x01/"
    with pytest.raises(BinaryHTTPError):
        bhttp.decode_request(bad)
    with pytest.raises(BinaryHTTPError):
        bhttp.encode_request(bhttp.Request("GET", "", "café.example", "/"))
    with pytest.raises(BinaryHTTPError):
        bhttp.encode_request(bhttp.Request("GET", "", "", "/\u20ac"))  # not one byte


def test_empty_go_post_carries_content_length_zero() -> None:
    request = bhttp.decode_request(GO_EMPTY_POST)
    assert request.method == "POST"
    assert request.headers == ((b"content-length", b"0"),)
    assert request.content == b""


def test_chunked_go_post_is_indeterminate_with_trailer_section() -> None:
    request = bhttp.decode_request(GO_CHUNKED_POST)
    assert request.headers == ((b"content-type", b"text/plain"),)
    assert request.content == b"hello world"
    assert request.trailers == ()


def test_empty_go_reply_is_known_length_with_content_length_zero() -> None:
    response = bhttp.decode_response(GO_EMPTY_REPLY)
    assert response.status == 200
    assert response.headers == ((b"content-length", b"0"),)
    assert response.content == b""


def test_go_reply_starts_with_a_one_byte_chunk() -> None:
    response = bhttp.decode_response(GO_TEXT_REPLY)
    assert response.status == 200
    assert response.headers == ((b"content-type", b"text/plain; charset=utf-8"),)
    assert response.content == b"Hello, World!"


def test_long_go_reply_chunks_use_the_shortest_lengths() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes: 1 + 4094 + 4094 + 2051
    message = goshaped.response(200, [(b"content-type", b"application/octet-stream")], body)
    section = b"\x0ccontent-type\x18application/octet-stream\x00"
    start = 3 + len(section)
    assert message[:start] == b"\x03\x40\xc8" + section
    assert message[start : start + 2] == b"\x01" + body[:1]
    assert message[start + 2 : start + 4] == b"\x4f\xfe"  # 4094
    assert message.endswith(b"\x48\x03" + body[-2051:] + b"\x00\x00")  # 2051, then ends
    assert bhttp.decode_response(message).content == body


def test_the_go_playing_helpers_build_the_golden_bytes() -> None:
    get = goshaped.request(
        b"GET",
        b"localhost:8080",
        b"/search?q=caf\xc3\xa9",
        [(b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")],
    )
    assert get == GO_GET_RAW_UTF8_QUERY
    assert goshaped.request(b"POST", b"localhost:8080", b"/echo") == GO_EMPTY_POST
    chunked = goshaped.request(
        b"POST",
        b"localhost:8080",
        b"/echo",
        [(b"content-type", b"text/plain")],
        b"hello world",
        chunked=True,
    )
    assert chunked == GO_CHUNKED_POST
    assert goshaped.response(200) == GO_EMPTY_REPLY
    text = [(b"content-type", b"text/plain; charset=utf-8")]
    assert goshaped.response(200, text, b"Hello, World!") == GO_TEXT_REPLY
