"""Connection-level response fields (narun.protocol.fields)."""

from __future__ import annotations

from narun.protocol.fields import end_to_end


def test_nothing_to_drop_returns_the_fields_themselves() -> None:
    fields = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    assert end_to_end(fields) is fields


def test_hop_by_hop_proxy_and_connection_named_fields_are_dropped() -> None:
    fields = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"close, X-Private ,"),
        (b"x-private", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"TE", b"trailers"),
        (b"trailer", b"x-sum"),
        (b"Proxy-Authenticate", b"Basic"),
        (b"proxy-connection", b"keep-alive"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]
    assert end_to_end(fields) == [
        (b"Content-Type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_a_field_named_proxy_like_but_not_a_prefix_is_kept() -> None:
    fields = [(b"x-proxy-id", b"1"), (b"upgrade-insecure-requests", b"1"), (b"tee", b"2")]
    assert end_to_end(fields) is fields
