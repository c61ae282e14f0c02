"""Tests for narun.gateway.routing: exact vs prefix, longest match, 404, 405, redirect."""

from __future__ import annotations

import pytest

from narun.config.gateway import HTTPRoute
from narun.errors import ConfigError
from narun.gateway.routing import (
    NOT_FOUND,
    Match,
    MatchResult,
    MethodNotAllowed,
    Redirect,
    Router,
)


def route(path: str, *methods: str, service: str = "svc") -> HTTPRoute:
    return HTTPRoute(path=path, methods=methods, service=service)


def service_of(result: MatchResult) -> str:
    assert isinstance(result, Match), result
    return result.route.service


def test_exact_route_matches_only_identical_path() -> None:
    router = Router([route("/goodbye", "GET", service="goodbye")])
    assert service_of(router.match("GET", "/goodbye")) == "goodbye"
    assert router.match("GET", "/goodbye/") is NOT_FOUND
    assert router.match("GET", "/goodbye/x") is NOT_FOUND
    assert router.match("GET", "/goodbyes") is NOT_FOUND
    assert router.match("GET", "/") is NOT_FOUND


def test_prefix_route_matches_itself_and_subtree() -> None:
    router = Router([route("/hello/", "POST", service="hello")])
    for path in ("/hello/", "/hello/x", "/hello/x/y/z", "/hello//x"):
        assert service_of(router.match("POST", path)) == "hello", path
    assert router.match("POST", "/hellox") is NOT_FOUND
    assert router.match("POST", "/other/hello/") is NOT_FOUND


def test_match_returns_the_route_object() -> None:
    r = route("/a/", "GET")
    result = Router([r]).match("GET", "/a/b")
    assert result == Match(r)
    assert isinstance(result, Match)
    assert result.route is r


def test_longest_prefix_wins() -> None:
    router = Router(
        [
            route("/api/", "GET", service="api"),
            route("/api/v2/", "GET", service="v2"),
            route("/api/v2/admin/", "GET", service="admin"),
        ]
    )
    assert service_of(router.match("GET", "/api/x")) == "api"
    assert service_of(router.match("GET", "/api/v2/x")) == "v2"
    assert service_of(router.match("GET", "/api/v2/admin/users/1")) == "admin"
    assert service_of(router.match("GET", "/api/v2admin/")) == "api"


def test_longest_wins_regardless_of_route_order() -> None:
    routes = [route("/a/b/", "GET", service="long"), route("/a/", "GET", service="short")]
    for ordered in (routes, routes[::-1]):
        router = Router(ordered)
        assert service_of(router.match("GET", "/a/b/c")) == "long"
        assert service_of(router.match("GET", "/a/c")) == "short"


def test_exact_beats_prefix() -> None:
    router = Router(
        [
            route("/files/", "GET", service="tree"),
            route("/files/readme", "GET", service="readme"),
            route("/files", "GET", service="index"),
        ]
    )
    assert service_of(router.match("GET", "/files/readme")) == "readme"
    assert service_of(router.match("GET", "/files/readme/x")) == "tree"
    assert service_of(router.match("GET", "/files/other")) == "tree"
    # An exact route for the bare path wins over the redirect to the prefix.
    assert service_of(router.match("GET", "/files")) == "index"


def test_same_path_different_methods_go_to_different_services() -> None:
    router = Router(
        [
            route("/items/", "GET", "HEAD", service="reader"),
            route("/items/", "POST", "DELETE", service="writer"),
        ]
    )
    assert service_of(router.match("GET", "/items/1")) == "reader"
    assert service_of(router.match("HEAD", "/items/1")) == "reader"
    assert service_of(router.match("POST", "/items/1")) == "writer"
    assert service_of(router.match("DELETE", "/items/")) == "writer"
    assert router.match("PUT", "/items/1") == MethodNotAllowed(
        ("DELETE", "GET", "HEAD", "POST"), "/items/"
    )


def test_not_found() -> None:
    router = Router([route("/hello/", "GET"), route("/bye", "GET")])
    assert router.match("GET", "/") is NOT_FOUND
    assert router.match("GET", "/nope") is NOT_FOUND
    assert router.match("GET", "") is NOT_FOUND
    assert router.match("GET", "*") is NOT_FOUND
    assert Router([]).match("GET", "/") is NOT_FOUND


def test_method_not_allowed_lists_sorted_methods() -> None:
    router = Router([route("/hello/", "PUT", "POST", "DELETE")])
    result = router.match("GET", "/hello/x")
    assert result == MethodNotAllowed(("DELETE", "POST", "PUT"), "/hello/")
    assert isinstance(result, MethodNotAllowed)
    assert result.allow == tuple(sorted(result.allow))


def test_most_specific_pattern_decides_the_method() -> None:
    router = Router([route("/", "GET", "POST", service="root"), route("/api/", "GET")])
    # "/api/" is the most specific match; it does not take POST, so no fall-through to "/".
    assert router.match("POST", "/api/x") == MethodNotAllowed(("GET",), "/api/")
    assert service_of(router.match("POST", "/other")) == "root"


def test_method_is_case_insensitive() -> None:
    router = Router([route("/a", "GET")])
    assert service_of(router.match("get", "/a")) == "svc"
    assert service_of(router.match("Get", "/a")) == "svc"


def test_redirect_to_prefix_with_trailing_slash() -> None:
    router = Router([route("/hello/", "POST"), route("/a/b/", "GET")])
    assert router.match("POST", "/hello") == Redirect(location_path="/hello/")
    # Whatever the method: the redirect target decides about the method.
    assert router.match("GET", "/hello") == Redirect(location_path="/hello/")
    assert router.match("GET", "/a/b") == Redirect(location_path="/a/b/")
    assert router.match("GET", "/a") is NOT_FOUND


def test_redirect_beats_a_shorter_prefix() -> None:
    router = Router([route("/", "GET", service="root"), route("/docs/", "GET", service="docs")])
    assert router.match("GET", "/docs") == Redirect("/docs/")
    assert service_of(router.match("GET", "/docsx")) == "root"


def test_root_prefix_is_catch_all() -> None:
    router = Router([route("/", "GET", service="root")])
    for path in ("/", "/x", "/x/y/", "/%20", "/a?b"):
        assert service_of(router.match("GET", path)) == "root", path
    assert router.match("GET", "") is NOT_FOUND
    assert router.match("GET", "no-slash") is NOT_FOUND


def test_paths_are_compared_literally() -> None:
    router = Router(
        [route("/hello/", "GET", service="hello"), route("/a%20b", "GET", service="ab")]
    )
    assert service_of(router.match("GET", "/hello/a%20b")) == "hello"
    assert service_of(router.match("GET", "/hello/%2F..%2F")) == "hello"
    assert service_of(router.match("GET", "/hello/héllo/✓")) == "hello"
    # An encoded slash is not a slash: no match, no redirect.
    assert router.match("GET", "/hello%2F") is NOT_FOUND
    assert router.match("GET", "/hello%2Fx") is NOT_FOUND
    # Percent-encoding is neither decoded nor applied by the router.
    assert service_of(router.match("GET", "/a%20b")) == "ab"
    assert router.match("GET", "/a b") is NOT_FOUND
    assert router.match("GET", "/a%20B") is NOT_FOUND


def test_duplicate_path_and_method_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"duplicate HTTP route: GET '/a/'"):
        Router([route("/a/", "GET", "POST"), route("/a/", "GET", service="other")])


def test_results_are_frozen_and_slotted() -> None:
    result = Router([route("/a", "GET")]).match("GET", "/b")
    assert result is NOT_FOUND
    redirect = Redirect("/x/")
    with pytest.raises(AttributeError):
        redirect.location_path = "/y/"  # type: ignore[misc]
    assert not hasattr(redirect, "__dict__")
