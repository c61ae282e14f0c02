"""How the gateway turns an ASGI request into a Binary HTTP request (pure part)."""

from __future__ import annotations

from narun.gateway.http import _to_bhttp


def scope(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "path": "/a b",
        "raw_path": b"/a%20b",
        "query_string": b"x=1",
        "headers": [
            (b"host", b"example.com"),
            (b"connection", b"keep-alive"),
            (b"transfer-encoding", b"chunked"),
            (b"content-length", b"999"),
            (b"x-a", b"1"),
            (b"x-a", b"2"),
        ],
    }
    base.update(over)
    return base


def test_host_becomes_authority_and_hop_by_hop_fields_are_dropped() -> None:
    request = _to_bhttp(scope(), b"body")
    assert request.method == "POST"
    assert request.scheme == "https"
    assert request.authority == "example.com"
    assert request.path == "/a%20b?x=1"
    # Repeated fields stay; Content-Length is the length actually read.
    assert request.headers == ((b"x-a", b"1"), (b"x-a", b"2"), (b"content-length", b"4"))
    assert request.content == b"body"


def test_empty_post_still_says_content_length_zero() -> None:
    request = _to_bhttp(scope(headers=[]), b"")
    assert request.headers == ((b"content-length", b"0"),)


def test_get_without_body_has_no_content_length() -> None:
    request = _to_bhttp(scope(method="GET", headers=[], query_string=b""), b"")
    assert request.headers == ()
    assert request.path == "/a%20b"


def test_non_ascii_raw_path_is_percent_encoded() -> None:
    request = _to_bhttp(scope(raw_path="/café".encode(), query_string=b"q=\xfc"), b"")
    assert request.path == "/caf%C3%A9?q=%FC"
