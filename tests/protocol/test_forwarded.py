"""narun.protocol.forwarded: who the client is, behind trusted and untrusted peers (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from narun.protocol.forwarded import (
    FORWARDING_HEADERS,
    Origin,
    TrustedProxies,
    connection_options,
    header_bytes,
    resolve,
)

LOCAL = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])
SPOOFED = [
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"shop.example"),
    (b"forwarded", b"for=203.0.113.7"),
    (b"x-real-ip", b"203.0.113.7"),
    (b"x-forwarded-prefix", b"/evil"),
]


def fields(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k == name]


def test_untrusted_peer_cannot_set_client_scheme_or_host() -> None:
    headers = [(b"host", b"gw.local:8080"), (b"x-app", b"1"), *SPOOFED]
    out, origin = resolve(headers, peer=("192.0.2.9", 5555), scheme="http", trusted=LOCAL)
    assert origin == Origin(client=("192.0.2.9", 5555), scheme="http", host=b"gw.local:8080")
    assert out == [
        (b"host", b"gw.local:8080"),
        (b"x-app", b"1"),
        (b"x-forwarded-for", b"192.0.2.9"),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", b"gw.local:8080"),
    ]


def test_nobody_is_trusted_by_default() -> None:
    out, origin = resolve(SPOOFED, peer=("127.0.0.1", 1), scheme="https", trusted=TrustedProxies())
    assert origin.client == ("127.0.0.1", 1)
    assert origin.scheme == "https"
    assert fields(out, b"x-forwarded-for") == [b"127.0.0.1"]
    assert not fields(out, b"forwarded")


def test_trusted_peer_tells_client_scheme_and_host() -> None:
    headers = [(b"host", b"127.0.0.1:8080"), *SPOOFED]
    out, origin = resolve(headers, peer=("127.0.0.1", 40000), scheme="http", trusted=LOCAL)
    assert origin == Origin(client=("203.0.113.7", 0), scheme="https", host=b"shop.example")
    assert fields(out, b"host") == [b"shop.example"]
    assert fields(out, b"x-forwarded-for") == [b"203.0.113.7, 127.0.0.1"]
    assert fields(out, b"x-forwarded-proto") == [b"https"]
    assert fields(out, b"x-forwarded-host") == [b"shop.example"]
    # Other forwarding fields from a trusted proxy are passed on unchanged.
    assert fields(out, b"forwarded") == [b"for=203.0.113.7"]
    assert fields(out, b"x-real-ip") == [b"203.0.113.7"]


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        # The rightmost address that is not a trusted proxy is the client ...
        (b"198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        # ... the leftmost when every hop is trusted ...
        (b"10.0.0.1, 10.0.0.2", "10.0.0.1"),
        # ... and a garbage entry stops the walk: only hops to its right are believed.
        (b"203.0.113.7, unknown, 10.0.0.5", "10.0.0.5"),
        (b"nonsense", "127.0.0.1"),
        (b"[2001:db8::1]:443, 10.0.0.5", "2001:db8::1"),
        (b"2001:db8::2", "2001:db8::2"),
        (b"203.0.113.9:5678", "203.0.113.9"),
        (b"::ffff:10.0.0.1, 198.51.100.4", "198.51.100.4"),
    ],
)
def test_client_is_the_first_untrusted_hop_from_the_right(chain: bytes, client: str) -> None:
    _, origin = resolve(
        [(b"x-forwarded-for", chain)], peer=("127.0.0.1", 1), scheme="http", trusted=LOCAL
    )
    assert origin.client is not None
    assert origin.client[0] == client


def test_repeated_forwarded_for_fields_form_one_chain() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.9")]
    out, origin = resolve(headers, peer=("10.0.0.1", 9), scheme="http", trusted=LOCAL)
    assert fields(out, b"x-forwarded-for") == [b"203.0.113.7, 10.0.0.9, 10.0.0.1"]
    assert origin.client == ("203.0.113.7", 0)


@pytest.mark.parametrize("proto", [b"ftp", b"", b"https extra"])
def test_unknown_forwarded_proto_is_ignored(proto: bytes) -> None:
    _, origin = resolve(
        [(b"x-forwarded-proto", proto)], peer=("127.0.0.1", 1), scheme="http", trusted=LOCAL
    )
    assert origin.scheme == "http"


def test_forwarded_proto_takes_the_first_value_case_insensitively() -> None:
    _, origin = resolve(
        [(b"x-forwarded-proto", b"HTTPS, http")],
        peer=("127.0.0.1", 1),
        scheme="http",
        trusted=LOCAL,
    )
    assert origin.scheme == "https"


@pytest.mark.parametrize("host", [b"a b", b"x/y", b"user@host", b""])
def test_malformed_forwarded_host_is_ignored(host: bytes) -> None:
    headers = [(b"host", b"gw:1"), (b"x-forwarded-host", host)]
    out, origin = resolve(headers, peer=("127.0.0.1", 1), scheme="http", trusted=LOCAL)
    assert origin.host == b"gw:1"
    assert fields(out, b"host") == [b"gw:1"]


def test_forwarded_host_without_a_host_field_adds_one() -> None:
    out, origin = resolve(
        [(b"x-forwarded-host", b"[2001:db8::1]:8443")],
        peer=("::1", 1),
        scheme="http",
        trusted=TrustedProxies(["::1"]),
    )
    assert out[0] == (b"host", b"[2001:db8::1]:8443")
    assert origin.host == b"[2001:db8::1]:8443"


def test_fields_named_in_connection_are_dropped_but_never_host() -> None:
    headers = [
        (b"host", b"h"),
        (b"connection", b"keep-alive, X-Secret, host"),
        (b"x-secret", b"s"),
        (b"x-other", b"o"),
    ]
    out, _ = resolve(headers, peer=("192.0.2.1", 1), scheme="http", trusted=LOCAL)
    assert fields(out, b"x-secret") == []
    assert fields(out, b"host") == [b"h"]
    assert fields(out, b"x-other") == [b"o"]
    assert connection_options(headers) == {b"keep-alive", b"x-secret"}


def test_second_host_field_is_dropped() -> None:
    out, origin = resolve(
        [(b"host", b"a"), (b"host", b"b")], peer=("192.0.2.1", 1), scheme="http", trusted=LOCAL
    )
    assert fields(out, b"host") == [b"a"]
    assert origin.host == b"a"


def test_without_peer_no_address_is_invented() -> None:
    out, origin = resolve(SPOOFED, peer=None, scheme="http", trusted=LOCAL)
    assert origin.client is None
    assert fields(out, b"x-forwarded-for") == []
    assert fields(out, b"x-forwarded-proto") == [b"http"]


def test_trusted_proxies_parse_addresses_and_networks() -> None:
    trusted = TrustedProxies(["127.0.0.1", " 10.0.0.0/8 ", "[::1]", "192.168.1.7/24"])
    assert "10.200.0.1" in trusted
    assert "192.168.1.200" in trusted
    assert "::1" in trusted
    assert "::ffff:127.0.0.1" in trusted
    assert "127.0.0.2" not in trusted
    assert "not-an-ip" not in trusted
    assert 42 not in trusted
    assert trusted
    assert not TrustedProxies()
    assert "TrustedProxies(" in repr(trusted)
    with pytest.raises(ValueError, match="does not appear"):
        TrustedProxies(["10.0.0.0/33x"])


def test_header_bytes_counts_as_on_the_wire() -> None:
    assert header_bytes([(b"ab", b"cde"), (b"x", b"")]) == (2 + 3 + 4) + (1 + 0 + 4)
    assert header_bytes([]) == 0


_names = st.sampled_from([*sorted(FORWARDING_HEADERS), b"host", b"x-app", b"connection"])
_values = st.binary(min_size=0, max_size=20)


@given(st.lists(st.tuples(_names, _values), max_size=12))
def test_from_an_untrusted_peer_only_the_peer_is_reported(
    headers: list[tuple[bytes, bytes]],
) -> None:
    out, origin = resolve(headers, peer=("192.0.2.50", 7), scheme="http", trusted=LOCAL)
    assert origin.client == ("192.0.2.50", 7)
    assert origin.scheme == "http"
    assert fields(out, b"x-forwarded-for") == [b"192.0.2.50"]
    assert fields(out, b"x-forwarded-proto") == [b"http"]
    for name in FORWARDING_HEADERS - {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }:
        assert fields(out, name) == []
