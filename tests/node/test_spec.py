"""App spec validation: every problem names its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from narun.errors import ConfigError
from narun.node.spec import AppSpec, dump_spec, load_spec, parse_spec


def problems(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_spec(data, source="app.yaml")
    return str(info.value)


def test_minimal_app_spec_gets_defaults() -> None:
    spec = parse_spec({"name": "shop", "app": "shop.main:app"})
    assert spec.replicas == 1
    assert spec.service_name == "shop"
    assert spec.restart.max_restarts == 5
    assert spec.stop_grace_seconds == 10.0


def test_each_bad_key_is_named_with_its_path() -> None:
    text = problems(
        {
            "name": "a.b",
            "app": "shop.main:app",
            "replicas": -1,
            "restart": {"max_restrts": 1},
            "env": {"1X": "a"},
            "stop_grace_seconds": 0,
        }
    )
    lines = text.splitlines()
    assert any(
        line.startswith("app.yaml: name: must be a NATS Micro service name") for line in lines
    )
    assert "app.yaml: replicas: must be a whole number >= 0 (got -1)" in lines
    assert "app.yaml: restart.max_restrts: unknown key (did you mean 'max_restarts'?)" in lines
    assert any(
        line.startswith("app.yaml: env: '1X' is not an environment variable") for line in lines
    )
    assert any(
        line.startswith("app.yaml: stop_grace_seconds: must be a number > 0") for line in lines
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "x"}, "needs 'app'"),
        ({"name": "x", "app": "a:b", "command": "ls"}, "give 'app' or 'command', not both"),
        ({"name": "x", "app": "not a target"}, "app: must be 'pkg.module:attribute'"),
        ({"name": "x", "command": "ls", "service": "s"}, "'service' goes with 'app'"),
        ({"name": "x", "app": "a:b", "nodes": {"n1": 2}, "replicas": 3}, "does not match"),
        ({"name": "x", "app": "a:b", "nodes": {"n1": 0}}, "n1: replica count must be"),
        ({"name": "x", "app": "a:b", "env": {"NARUN_NODE_ID": "n"}}, "set by the node"),
        ({"app": "a:b"}, "name: required"),
        ({"name": "x", "app": "a:b", "replcas": 2}, "did you mean 'replicas'?"),
        ([1, 2], "an app spec is a mapping"),
    ],
)
def test_bad_specs_are_refused_with_a_reason(data: object, expected: str) -> None:
    assert expected in problems(data)


def test_go_style_lists_are_accepted() -> None:
    spec = parse_spec(
        {
            "name": "x",
            "command": "./server --port 1",
            "env": [{"name": "A", "value": "1"}],
            "nodes": [{"name": "n1", "replicas": 2}, {"name": "n2", "replicas": 1}],
        }
    )
    assert spec.command == ("./server", "--port", "1")
    assert spec.env == {"A": "1"}
    assert spec.nodes == {"n1": 2, "n2": 1}
    assert spec.replicas == 3


def test_version_changes_with_what_shapes_an_instance_only() -> None:
    base = parse_spec({"name": "x", "app": "a:b", "replicas": 1})
    scaled = parse_spec({"name": "x", "app": "a:b", "replicas": 5})
    changed = parse_spec({"name": "x", "app": "a:b", "env": {"A": "1"}})
    tagged = parse_spec({"name": "x", "app": "a:b", "tag": "v2"})
    assert base.version == scaled.version
    assert base.version != changed.version
    assert tagged.version.startswith("v2-")


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = parse_spec(
        {"name": "x", "app": "a:b", "restart": {"backoff_seconds": 1, "max_backoff_seconds": 5}}
    ).restart
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_dump_round_trips(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "name": "x",
            "app": "a:b",
            "replicas": 3,
            "env": {"A": "1"},
            "artifact": {"object": "x-abc", "digest": "SHA-256=abc", "kind": "python"},
        }
    )
    path = tmp_path / "spec.yaml"
    path.write_bytes(dump_spec(spec))
    again = parse_spec(load_spec(path))
    assert again == spec
    assert "restart" not in yaml.safe_load(dump_spec(spec))  # defaults left out


def test_load_spec_names_the_yaml_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\napp: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: invalid YAML"):
        load_spec(path)


def test_spec_is_frozen() -> None:
    spec = parse_spec({"name": "x", "app": "a:b"})
    with pytest.raises(ValueError, match="frozen"):
        spec.replicas = 3
    assert isinstance(spec, AppSpec)


def test_value_from_secret_in_go_s_list_and_in_a_mapping() -> None:
    go = parse_spec(
        {
            "name": "a",
            "command": "x",
            "env": [{"name": "A", "value": "1"}, {"name": "DB", "valueFromSecret": "db-pass"}],
        }
    )
    assert go.env == {"A": "1"}
    assert go.secret_env == {"DB": "db-pass"}
    ours = parse_spec({"name": "a", "command": "x", "env": {"DB": {"valueFromSecret": "db-pass"}}})
    assert ours.secret_env == go.secret_env
    assert parse_spec(yaml.safe_load(dump_spec(go))) == go  # stored and read back


def test_a_secret_s_revision_changes_the_run_key_not_the_version() -> None:
    spec = parse_spec({"name": "a", "command": "x", "env": {"DB": {"valueFromSecret": "db"}}})
    salted = spec.salted("db:7")
    assert salted.version == spec.version
    assert salted.run_key != spec.run_key
    assert salted.run_key != spec.salted("db:8").run_key


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ([{"name": "B", "value": "1", "valueFromSecret": "db"}], "not both"),
        ({"B": {"valueFromSecret": "d b"}}, "secret_env: B: a secret name is"),
        ({"B": {"other": "db"}}, "must be {valueFromSecret"),
        ({"NARUN_RUN_ID": {"valueFromSecret": "db"}}, "set by the node"),
    ],
)
def test_bad_value_from_secret(env: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        parse_spec({"name": "a", "command": "x", "env": env})


def test_routes_are_claimed_by_narun_serve_flags() -> None:
    spec = parse_spec(
        {
            "name": "shop",
            "app": "shop.main:app",
            "routes": [{"path": "/shop/", "methods": ["get", "POST"]}, {"path": "/s"}],
            "grpc_routes": ["shop.v1.Cart"],
        }
    )
    assert spec.routes[0].flag() == "GET,POST /shop/"
    assert spec.routes[1].methods[0] == "GET"
    assert spec.grpc_routes == ("shop.v1.Cart",)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"routes": [{"path": "shop"}]}, "routes[0]: route path must start with '/'"),
        ({"routes": [{"path": "/s/", "methods": []}]}, "routes[0].methods: at least one method"),
        ({"routes": [{"path": "/s/", "verbs": ["GET"]}]}, "routes[0].verbs: unknown key"),
        ({"grpc_routes": ["not a name"]}, "grpc_routes: 'not a name' is not a gRPC service"),
    ],
)
def test_bad_routes_name_the_key(extra: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec({"name": "shop", "app": "shop.main:app", **extra}, source="app.yaml")
    assert f"app.yaml: {expected}" in str(info.value)


def test_routes_need_an_app() -> None:
    with pytest.raises(ConfigError, match="'routes' and 'grpc_routes' go with 'app'"):
        parse_spec({"name": "x", "command": "sleep 1", "routes": [{"path": "/x/"}]})


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("name: x\napp: a:b\nreplicas: 1\nreplicas: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'replicas'"):
        load_spec(path)
