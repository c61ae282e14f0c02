"""Tests for narun.config.gateway: the Go narun schema, extensions, and error messages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from narun.config.addr import parse_addr, validate_service_name
from narun.config.gateway import (
    GatewayConfig,
    GRPCRoute,
    HTTPRoute,
    load_config,
    parse_config,
)
from narun.errors import ConfigError

SEED = """\
nats_url: "nats://localhost:4222"
server_addr: ":8080"
grpc_addr: ":8081"
metrics_addr: ":9090"
request_timeout_seconds: 15
routes:
  - path: "/hello/"
    methods: ["POST", "PUT"]
    service: "hello"
  - grpc: "hello.v1.Greeter"
    service: "greeter-service"
  - path: "/goodbye"
    methods: ["GET"]
    service: "goodbye"
"""

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"


def minimal(**extra: Any) -> dict[str, Any]:
    """A valid config mapping with one HTTP route, plus ``extra`` top-level keys."""
    return {"routes": [{"path": "/a/", "methods": ["GET"], "service": "a"}], **extra}


def with_route(**route: Any) -> dict[str, Any]:
    return {"grpc_addr": ":8081", "routes": [route]}


def errors_of(data: object) -> list[str]:
    """Parse ``data`` expecting failure; return the message lines."""
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="cfg.yaml", env={})
    return str(info.value).splitlines()


def single_error(data: object) -> str:
    lines = errors_of(data)
    assert len(lines) == 1, lines
    return lines[0]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- valid configs -------------------------------------------------------------------


def test_seed_config_parses_to_expected_objects(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, SEED), env={})
    assert cfg == GatewayConfig(
        nats_url="nats://localhost:4222",
        server_addr=":8080",
        grpc_addr=":8081",
        metrics_addr=":9090",
        request_timeout_seconds=15.0,
        routes=(
            HTTPRoute(path="/hello/", methods=("POST", "PUT"), service="hello"),
            GRPCRoute(grpc="hello.v1.Greeter", service="greeter-service"),
            HTTPRoute(path="/goodbye", methods=("GET",), service="goodbye"),
        ),
    )
    assert isinstance(cfg.request_timeout_seconds, float)
    assert [r.path for r in cfg.http_routes] == ["/hello/", "/goodbye"]
    assert [r.grpc for r in cfg.grpc_routes] == ["hello.v1.Greeter"]


def test_example_file_is_the_seed_config() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == SEED
    assert load_config(EXAMPLE, env={}).routes[1] == GRPCRoute(
        grpc="hello.v1.Greeter", service="greeter-service"
    )


def test_defaults() -> None:
    cfg = parse_config(minimal(), env={})
    assert cfg.nats_url == "nats://localhost:4222"
    assert cfg.server_addr == ":8080"
    assert cfg.grpc_addr == ""
    assert cfg.metrics_addr == ":9090"
    assert cfg.request_timeout_seconds == 30.0
    assert cfg.grpc_routes == ()


def test_result_is_immutable() -> None:
    cfg = parse_config(minimal(), env={})
    with pytest.raises(ValidationError):
        cfg.nats_url = "nats://elsewhere:4222"  # type: ignore[misc, unused-ignore]
    with pytest.raises(ValidationError):
        cfg.http_routes[0].service = "b"  # type: ignore[misc, unused-ignore]
    assert isinstance(cfg.routes, tuple)
    assert isinstance(cfg.http_routes[0].methods, tuple)


def test_methods_are_trimmed_and_upper_cased() -> None:
    cfg = parse_config(
        with_route(path="/a", methods=[" get ", "Post", "M-SEARCH"], service="a"), env={}
    )
    assert cfg.http_routes[0].methods == ("GET", "POST", "M-SEARCH")


def test_route_timeout_overrides_default() -> None:
    cfg = parse_config(
        {
            "request_timeout_seconds": 2.5,
            "grpc_addr": "127.0.0.1:0",
            "routes": [
                {"path": "/slow/", "methods": ["GET"], "service": "slow", "timeout": 60},
                {"path": "/fast", "methods": ["GET"], "service": "fast"},
                {"grpc": "a.B", "service": "g", "timeout": 0.25},
            ],
        },
        env={},
    )
    slow, fast, grpc = cfg.routes
    assert slow.timeout == 60.0
    assert cfg.route_timeout(slow) == 60.0
    assert cfg.route_timeout(fast) == 2.5
    assert cfg.route_timeout(grpc) == 0.25


def test_same_path_different_methods_different_services() -> None:
    cfg = parse_config(
        {
            "routes": [
                {"path": "/items/", "methods": ["GET"], "service": "reader"},
                {"path": "/items/", "methods": ["POST", "DELETE"], "service": "writer"},
            ]
        },
        env={},
    )
    assert [r.service for r in cfg.http_routes] == ["reader", "writer"]


def test_websocket_route_switch() -> None:
    route = {"path": "/ws/", "methods": ["GET"], "service": "chat"}
    cfg = parse_config({"routes": [{**route, "websocket": True}, {**route, "path": "/p"}]}, env={})
    assert [r.websocket for r in cfg.http_routes] == [True, False]
    line = single_error({"routes": [{**route, "methods": ["POST"], "websocket": True}]})
    assert "routes[0]" in line
    assert "needs GET in methods" in line
    assert "websocket" in single_error({"routes": [{**route, "websocket": "maybe"}]})


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:65535", ("::", 65535)),
        ("localhost:8080", ("localhost", 8080)),
        ("gw-1.example.com:443", ("gw-1.example.com", 443)),
    ],
)
def test_parse_addr_accepts(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected
    assert parse_config(minimal(server_addr=addr), env={}).server_addr == addr


@pytest.mark.parametrize(
    ("addr", "fragment"),
    [
        ("8080", "expected 'host:port'"),
        ("", "expected 'host:port'"),
        (":65536", "port must be a number 0..65535"),
        (":-1", "port must be a number 0..65535"),
        (":http", "port must be a number 0..65535"),
        ("localhost:", "port must be a number 0..65535"),
        ("::1:8080", "need brackets"),
        ("[nope]:80", "invalid IPv6"),
        ("300.1.1.1:80", "invalid IPv4"),
        ("bad_host:80", "invalid host name"),
        ("a b:80", "invalid host name"),
    ],
)
def test_parse_addr_rejects(addr: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        parse_addr(addr)
    assert repr(addr) in str(info.value)


def test_empty_grpc_and_metrics_addr_disable_them() -> None:
    cfg = parse_config(minimal(grpc_addr="", metrics_addr=""), env={})
    assert (cfg.grpc_addr, cfg.metrics_addr) == ("", "")


def test_validate_service_name() -> None:
    assert validate_service_name("greeter-service_2") == "greeter-service_2"
    for bad in ("a.b", "", "a b", "a*", "a>", "héllo"):
        with pytest.raises(ConfigError, match=r"invalid service name"):
            validate_service_name(bad)


# --- environment override ------------------------------------------------------------


def test_env_overrides_nats_url(tmp_path: Path) -> None:
    path = write(tmp_path, SEED)
    cfg = load_config(path, env={"NARUN_NATS_URL": "nats://nats.internal:4222"})
    assert cfg.nats_url == "nats://nats.internal:4222"
    assert load_config(path, env={"NARUN_NATS_URL": ""}).nats_url == "nats://localhost:4222"


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NARUN_NATS_URL", "tls://secure:4222")
    assert parse_config(minimal()).nats_url == "tls://secure:4222"
    monkeypatch.delenv("NARUN_NATS_URL")
    assert parse_config(minimal()).nats_url == "nats://localhost:4222"


def test_bad_env_nats_url_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(), source="cfg.yaml", env={"NARUN_NATS_URL": "nats://a b"})
    assert str(info.value).startswith("cfg.yaml: nats_url (from NARUN_NATS_URL): ")


# --- one test per error class --------------------------------------------------------


def test_unknown_top_level_key() -> None:
    assert single_error(minimal(server_adr=":1")) == (
        "cfg.yaml: server_adr: unknown key (did you mean 'server_addr'?)"
    )


def test_unknown_key_in_route() -> None:
    data = {
        "routes": [
            {"path": "/a", "methods": ["GET"], "service": "a"},
            {"path": "/b", "methods": ["GET"], "service": "b", "methds": ["PUT"]},
        ]
    }
    assert single_error(data).startswith("cfg.yaml: routes[1].methds: unknown key")


def test_non_string_keys_are_unknown_keys() -> None:
    data: dict[Any, Any] = minimal()
    data[1] = "x"
    data["routes"][0][None] = "y"
    assert errors_of(data) == [
        "cfg.yaml: routes[0].None: unknown key",
        "cfg.yaml: 1: unknown key",
    ]


def test_wrong_type_timeout() -> None:
    assert single_error(minimal(request_timeout_seconds="abc")) == (
        "cfg.yaml: request_timeout_seconds: must be a number > 0 (got 'abc')"
    )


@pytest.mark.parametrize("value", [0, -1, True, float("inf"), float("nan"), None, "15"])
def test_bad_default_timeout(value: object) -> None:
    line = single_error(minimal(request_timeout_seconds=value))
    assert line.startswith("cfg.yaml: request_timeout_seconds: must be a number > 0 (got ")


def test_bad_route_timeout() -> None:
    line = single_error(with_route(grpc="a.B", service="g", timeout=0))
    assert line == "cfg.yaml: routes[0].timeout: must be a number > 0 (got 0)"


def test_wrong_type_string_field() -> None:
    assert single_error(minimal(server_addr=8080)) == (
        "cfg.yaml: server_addr: must be a string (got 8080)"
    )


def test_missing_service() -> None:
    assert single_error(with_route(path="/a", methods=["GET"])) == (
        "cfg.yaml: routes[0].service: required"
    )


def test_invalid_service_name_with_dot() -> None:
    line = single_error(with_route(path="/a", methods=["GET"], service="hello.world"))
    assert line.startswith("cfg.yaml: routes[0].service: must be a NATS Micro service name")
    assert line.endswith("(got 'hello.world')")


def test_both_path_and_grpc() -> None:
    line = single_error(with_route(path="/a", grpc="a.B", service="a"))
    assert line.startswith("cfg.yaml: routes[0]: has both 'path' and 'grpc'")


def test_neither_path_nor_grpc() -> None:
    data = minimal()
    data["routes"].append({"service": "x", "methods": ["GET"]})
    assert single_error(data) == (
        "cfg.yaml: routes[1]: needs 'path' (HTTP route) or 'grpc' (gRPC route)"
    )


def test_route_not_a_mapping() -> None:
    assert single_error({"routes": ["/hello/"]}).startswith(
        "cfg.yaml: routes[0]: must be a mapping"
    )


def test_methods_on_grpc_route() -> None:
    line = single_error(with_route(grpc="a.B", service="g", methods=["POST"]))
    assert line.startswith("cfg.yaml: routes[0].methods: not allowed on a gRPC route")


@pytest.mark.parametrize("methods", [[], None])
def test_empty_or_missing_methods(methods: object) -> None:
    route: dict[str, object] = {"path": "/a", "service": "a"}
    if methods is not None:
        route["methods"] = methods
    line = single_error({"routes": [route]})
    assert line.startswith("cfg.yaml: routes[0].methods: ")
    assert ("at least one" if methods == [] else "required") in line


def test_methods_not_a_list() -> None:
    line = single_error(with_route(path="/a", methods="GET", service="a"))
    assert line == (
        "cfg.yaml: routes[0].methods: must be a list of HTTP methods, e.g. ['GET', 'POST'] "
        "(got 'GET')"
    )


@pytest.mark.parametrize("method", ["GE T", "GET/", "", "(GET)", 1])
def test_bad_method_token(method: object) -> None:
    line = single_error(with_route(path="/a", methods=["GET", method], service="a"))
    assert line.startswith("cfg.yaml: routes[0].methods[1]: must be ")
    assert line.endswith(f"(got {method!r})")


def test_method_listed_twice_in_one_route() -> None:
    line = single_error(with_route(path="/a", methods=["GET", "get"], service="a"))
    assert line == "cfg.yaml: routes[0].methods: lists 'GET' twice (got ['GET', 'get'])"


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("hello/", "must start with '/'"),
        ("", "must start with '/'"),
        ("/a b", "must not contain spaces"),
        ("/a?x=1", "'?' or '#'"),
        ("/a/../b/", "'..' segments"),
    ],
)
def test_bad_path(path: str, fragment: str) -> None:
    line = single_error(with_route(path=path, methods=["GET"], service="a"))
    assert line.startswith("cfg.yaml: routes[0].path: ")
    assert fragment in line


def test_duplicate_path_and_method() -> None:
    data = {
        "routes": [
            {"path": "/a/", "methods": ["GET", "POST"], "service": "a"},
            {"path": "/b", "methods": ["GET"], "service": "b"},
            {"path": "/a/", "methods": ["put", "post"], "service": "c"},
        ]
    }
    assert single_error(data) == (
        "cfg.yaml: routes[2].methods: POST '/a/' is already routed by routes[0]"
    )


def test_duplicate_grpc_service() -> None:
    data = {
        "grpc_addr": ":8081",
        "routes": [
            {"grpc": "hello.v1.Greeter", "service": "a"},
            {"grpc": " hello.v1.Greeter ", "service": "b"},
        ],
    }
    assert single_error(data) == (
        "cfg.yaml: routes[1].grpc: 'hello.v1.Greeter' is already routed by routes[0]"
    )


@pytest.mark.parametrize("name", ["hello/Greeter", "hello v1", "hello..Greeter", "1a.B", ""])
def test_bad_grpc_name(name: str) -> None:
    line = single_error(with_route(grpc=name, service="g"))
    assert line.startswith("cfg.yaml: routes[0].grpc: must be a fully-qualified gRPC service")


def test_grpc_route_without_grpc_addr() -> None:
    data = minimal()
    data["routes"].append({"grpc": "hello.v1.Greeter", "service": "g"})
    assert single_error(data) == ("cfg.yaml: grpc_addr: required because routes[1] is a gRPC route")


@pytest.mark.parametrize("key", ["server_addr", "grpc_addr", "metrics_addr"])
def test_bad_address(key: str) -> None:
    line = single_error(minimal(**{key: "localhost:99999"}))
    assert line == (
        f"cfg.yaml: {key}: invalid listen address: port must be a number 0..65535 "
        "(got 'localhost:99999')"
    )


def test_empty_server_addr_is_an_error() -> None:
    assert single_error(minimal(server_addr="")).startswith("cfg.yaml: server_addr: invalid")


def test_two_listeners_on_one_port() -> None:
    line = single_error(minimal(metrics_addr="0.0.0.0:8080"))
    assert line == "cfg.yaml: metrics_addr: port 8080 is already used by server_addr"
    # Port 0 means "any free port": never a clash; different hosts do not clash either.
    parse_config(minimal(server_addr=":0", metrics_addr=":0"), env={})
    parse_config(minimal(server_addr="127.0.0.1:80", metrics_addr="127.0.0.2:80"), env={})


def test_routes_missing_or_empty() -> None:
    assert single_error({"server_addr": ":8080"}) == "cfg.yaml: routes: required"
    assert single_error({"routes": []}) == (
        "cfg.yaml: routes: at least one route is required (got [])"
    )
    assert single_error({"routes": None}).startswith("cfg.yaml: routes: must be a list")


def test_top_level_list() -> None:
    line = single_error(["routes"])
    assert (
        line == "cfg.yaml: top level must be a mapping of option names to values (got ['routes'])"
    )


def test_several_errors_reported_together(tmp_path: Path) -> None:
    text = SEED.replace('":9090"', '":99999"').replace("15", "abc")
    text += '    methds: ["GET"]\n  - path: "/x"\n    methods: ["GET"]\n    service: "a.b"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    source = str(tmp_path / "config.yaml")
    lines = str(info.value).splitlines()
    assert lines == [
        f"{source}: metrics_addr: invalid listen address: port must be a number 0..65535 "
        "(got ':99999')",
        f"{source}: request_timeout_seconds: must be a number > 0 (got 'abc')",
        f"{source}: routes[2].methds: unknown key (did you mean 'methods'?)",
        f"{source}: routes[3].service: must be a NATS Micro service name: letters, digits, "
        "'_' and '-' only (got 'a.b')",
    ]


def test_cross_key_errors_reported_together() -> None:
    data = {
        "metrics_addr": ":8080",
        "routes": [
            {"path": "/a", "methods": ["GET"], "service": "a"},
            {"path": "/a", "methods": ["GET"], "service": "b"},
            {"grpc": "a.B", "service": "c"},
        ],
    }
    assert errors_of(data) == [
        "cfg.yaml: routes[1].methods: GET '/a' is already routed by routes[0]",
        "cfg.yaml: grpc_addr: required because routes[2] is a gRPC route",
        "cfg.yaml: metrics_addr: port 8080 is already used by server_addr",
    ]


def test_default_source_name() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: routes: required$"):
        parse_config({}, env={})


# --- file-level errors ---------------------------------------------------------------


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'server_addr: ":8080"\nroutes:\n  - path: "/a": x\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: line 3, column ")
    assert "invalid YAML" in message


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, SEED + 'server_addr: ":8000"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert (
        str(info.value)
        == f"{path}: line 15, column 1: invalid YAML: found duplicate key 'server_addr'"
    )


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = (
        "base: &base {methods: [GET], service: a}\n"
        "routes:\n  - <<: *base\n    path: /a\n    service: b\n"
    )
    with pytest.raises(ConfigError, match=r"^\S+: base: unknown key$"):
        load_config(write(tmp_path, text), env={})
    text = "routes:\n  - &r {path: /a, methods: [GET], service: a}\n  - <<: *r\n    path: /b\n"
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.http_routes[1] == HTTPRoute(path="/b", methods=("GET",), service="a")


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read config file: No such file or directory"


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"the config is empty") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_top_level_list_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- path: /a\n")
    with pytest.raises(ConfigError, match=r"top level must be a mapping") as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")


def test_every_field_has_a_docstring() -> None:
    for model in (GatewayConfig, HTTPRoute, GRPCRoute):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


def test_stream_settings_default_and_per_route() -> None:
    cfg = parse_config(
        {
            "max_body_bytes": 1000,
            "stream_idle_timeout_seconds": 12,
            "routes": [
                {"path": "/a/", "methods": ["GET"], "service": "a"},
                {
                    "path": "/files/",
                    "methods": ["POST"],
                    "service": "files",
                    "max_body_bytes": 1 << 30,
                    "stream_idle_timeout": 120,
                },
            ],
        },
        env={},
    )
    plain, files = cfg.http_routes
    assert cfg.route_max_body(plain) == 1000
    assert cfg.route_max_body(files) == 1 << 30
    assert cfg.route_stream_idle(plain) == 12.0
    assert cfg.route_stream_idle(files) == 120.0
    default = parse_config(minimal(), env={})
    assert default.stream_idle_timeout_seconds == 30.0
    assert default.route_max_body(default.http_routes[0]) is None


@pytest.mark.parametrize(
    ("route_key", "value", "fragment"),
    [
        ("max_body_bytes", "1m", "routes[0].max_body_bytes: must be a whole number of bytes"),
        ("stream_idle_timeout", 0, "routes[0].stream_idle_timeout: must be a number > 0"),
    ],
)
def test_bad_stream_settings_name_the_key(route_key: str, value: object, fragment: str) -> None:
    route = {"path": "/a/", "methods": ["GET"], "service": "a", route_key: value}
    assert fragment in single_error({"routes": [route]})
    assert "stream_idle_timeout_seconds: must be a number > 0" in single_error(
        minimal(stream_idle_timeout_seconds=-1)
    )


def test_go_peer_limits_is_on_by_default_and_a_switch() -> None:
    assert parse_config(minimal(), env={}).go_peer_limits is True
    assert parse_config(minimal(go_peer_limits=False), env={}).go_peer_limits is False
    assert single_error(minimal(go_peer_limits="no")) == (
        "cfg.yaml: go_peer_limits: must be true or false (got 'no')"
    )


def test_dynamic_routes_allow_an_empty_static_table() -> None:
    cfg = parse_config(
        {"routes": [], "dynamic_routes": [{"path_prefix": "/apps/", "services": ["a"]}]}, env={}
    )
    assert cfg.dynamic_routes[0].path_prefix == "/apps/"
    assert cfg.dynamic_routes[0].services == ("a",)


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        ({"path_prefix": "/a"}, "dynamic_routes[0].path_prefix: must end with '/'"),
        ({}, "dynamic_routes[0]: needs exactly one of 'path_prefix' (HTTP) and 'grpc_package'"),
        ({"path_prefix": "/a/", "grpc_package": "x"}, "dynamic_routes[0]: needs exactly one"),
        ({"path_prefx": "/a/"}, "dynamic_routes[0].path_prefx: unknown key (did you mean"),
        ({"grpc_package": "shop.v1"}, "grpc_addr: required because dynamic_routes has"),
        ({"path_prefix": "/a/", "services": "x"}, "dynamic_routes[0].services: must be a list"),
    ],
)
def test_bad_dynamic_routes_name_the_key(rule: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"routes": [], "dynamic_routes": [rule]}, source="cfg.yaml", env={})
    assert f"cfg.yaml: {line}" in str(info.value)
