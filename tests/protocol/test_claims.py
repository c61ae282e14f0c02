"""Route claim documents: encode, decode, and what a reader refuses."""

from __future__ import annotations

import json

import pytest

from narun.protocol.claims import (
    Claim,
    ClaimError,
    HTTPClaim,
    claim_subject,
    decode_claim,
    encode_claim,
    parse_methods,
)


def test_a_claim_survives_the_round_trip() -> None:
    claim = Claim(
        service="shop",
        instance="abc",
        http=(HTTPClaim("/shop/", ("GET", "POST")),),
        grpc=("shop.v1.Cart",),
        since=12.5,
        ttl=3.0,
    )
    assert decode_claim(claim_subject("shop"), encode_claim(claim)) == claim


def test_a_withdrawal_is_down() -> None:
    data = json.dumps({"service": "shop", "instance": "a", "state": "down"}).encode()
    assert not decode_claim("narun.routes.claim.shop", data).up


def test_a_claim_for_another_service_than_its_subject_is_refused() -> None:
    claim = Claim(service="shop", instance="a", http=(HTTPClaim("/x/", ("GET",)),))
    with pytest.raises(ClaimError, match="published on"):
        decode_claim(claim_subject("other"), encode_claim(claim))


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        json.dumps({"service": "s", "instance": "a", "http": [{"path": "x", "methods": ["GET"]}]}),
        json.dumps({"service": "s", "instance": "a", "http": [{"path": "/x", "methods": []}]}),
        json.dumps({"service": "s", "instance": "a", "http": [{"path": "/a/../b"}]}),
        json.dumps({"service": "s", "instance": "a", "grpc": ["not a name"]}),
        json.dumps({"service": "s", "instance": "a", "ttl": 0}),
        json.dumps({"service": "s", "instance": "a", "state": "sideways"}),
        json.dumps({"service": "s"}),
    ],
)
def test_malformed_claims_are_refused(doc: str | bytes) -> None:
    data = doc.encode() if isinstance(doc, str) else doc
    with pytest.raises(ClaimError):
        decode_claim("narun.routes.claim.s", data)


def test_methods_are_parsed_upper_cased_and_unique() -> None:
    assert parse_methods("get, POST,get") == ("GET", "POST")
    with pytest.raises(ClaimError):
        parse_methods(" , ")
    with pytest.raises(ClaimError):
        parse_methods("GE T")


def test_a_route_may_carry_its_own_methods() -> None:
    from narun.protocol.claims import parse_route

    assert parse_route("/a/", ("GET",)) == HTTPClaim("/a/", ("GET",))
    assert parse_route("get,post /b") == HTTPClaim("/b", ("GET", "POST"))
    with pytest.raises(ClaimError):
        parse_route("GET no-slash")
