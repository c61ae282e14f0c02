"""The effective route table: rules, static precedence, one holder per path, expiry."""

from __future__ import annotations

from typing import Any

from narun.config.gateway import parse_config
from narun.gateway.routetable import RouteTable
from narun.protocol.claims import Claim, HTTPClaim


def table(**extra: Any) -> RouteTable:
    config: dict[str, Any] = {
        "grpc_addr": ":9091",
        "routes": [
            {"path": "/apps/admin/", "methods": ["GET"], "service": "admin"},
            {"grpc": "shop.v1.Static", "service": "admin"},
        ],
        "dynamic_routes": [
            {"path_prefix": "/apps/"},
            {"path_prefix": "/shop/", "services": ["shop"]},
            {"grpc_package": "shop.v1"},
        ],
        **extra,
    }
    return RouteTable(parse_config(config, env={}))


def claim(service: str, instance: str, *paths: str, since: float = 0, **kw: Any) -> Claim:
    http = tuple(HTTPClaim(p, ("GET",)) for p in paths)
    return Claim(service=service, instance=instance, http=http, since=since, **kw)


def test_a_claim_under_an_allowed_prefix_takes_effect() -> None:
    t = table()
    assert t.announce(claim("cart", "i1", "/apps/cart/"), now=0)
    r = t.resolve()
    assert [(x.path, x.methods, x.service) for x in r.http] == [("/apps/cart/", ("GET",), "cart")]
    assert not r.refusals
    assert [e.source for e in r.entries] == ["static", "static", "claim"]


def test_claims_outside_the_rules_or_by_other_services_are_refused() -> None:
    t = table()
    t.announce(claim("cart", "i1", "/elsewhere/", "/shop/"), now=0)
    r = t.resolve()
    assert not r.http
    assert {(x.pattern, x.reason) for x in r.refusals} == {
        ("/elsewhere/", "outside_rules"),
        ("/shop/", "service_not_allowed"),
    }


def test_static_routes_always_win() -> None:
    t = table()
    t.announce(claim("evil", "i1", "/apps/admin/", grpc=("shop.v1.Static",)), now=0)
    r = t.resolve()
    assert not r.http
    assert not r.grpc
    assert {x.reason for x in r.refusals} == {"static_route"}


def test_the_oldest_service_holds_a_path_and_the_other_is_refused() -> None:
    t = table()
    t.announce(claim("late", "l1", "/apps/x/", since=20), now=0)
    t.announce(claim("early", "e1", "/apps/x/", since=10), now=0)
    r = t.resolve()
    assert [x.service for x in r.http] == ["early"]
    assert [(x.service, x.reason) for x in r.refusals] == [("late", "held_by_other")]
    # When the holder is gone, the other takes over.
    assert t.announce(claim("early", "e1", up=False), now=1)
    assert [x.service for x in t.resolve().http] == ["late"]


def test_a_route_stays_while_any_instance_announces_it() -> None:
    t = table()
    t.announce(claim("cart", "i1", "/apps/cart/", ttl=3), now=0)
    t.announce(claim("cart", "i2", "/apps/cart/", ttl=3), now=2)
    assert [e.instances for e in t.resolve().entries if e.source == "claim"] == [2]
    assert t.announce(claim("cart", "i1", up=False), now=2.5)  # the first of two leaves
    assert [x.service for x in t.resolve().http] == ["cart"]
    assert not t.expire(now=4.9)
    assert t.expire(now=5.0)  # the last one stopped announcing: gone after its ttl
    assert not t.resolve().http


def test_a_repeated_announcement_changes_nothing_but_the_expiry() -> None:
    t = table()
    assert t.announce(claim("cart", "i1", "/apps/cart/", ttl=3), now=0)
    assert not t.announce(claim("cart", "i1", "/apps/cart/", ttl=3), now=2)
    assert not t.expire(now=4)
    assert t.expire(now=5)


def test_grpc_claims_need_the_package() -> None:
    t = table()
    t.announce(claim("shop", "i1", grpc=("shop.v1.Cart", "other.v1.X", "shop.v10.Y")), now=0)
    r = t.resolve()
    assert [x.grpc for x in r.grpc] == ["shop.v1.Cart"]
    assert {x.pattern for x in r.refusals} == {"other.v1.X", "shop.v10.Y"}
