"""An instance's command line and environment: nothing of the node's leaks in."""

from __future__ import annotations

from pathlib import Path

import pytest

from narun.node.launch import instance_env, launch, strip_credentials
from narun.node.spec import parse_spec

NODE_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/n",
    "LC_ALL": "C.UTF-8",
    "PYTHONPATH": "/node/src",
    "NARUN_NATS_PASSWORD": "node-secret",
    "AWS_SECRET_ACCESS_KEY": "x",
    "EXTRA": "passed",
}
ARTIFACT = {"object": "shop-0123", "digest": "SHA-256=abc", "kind": "python"}


def env_for(spec_data: dict[str, object], pass_env: tuple[str, ...] = ()) -> dict[str, str]:
    spec = parse_spec({"name": "shop", "app": "shop.main:app", **spec_data})
    return instance_env(
        NODE_ENV,
        spec=spec,
        index=2,
        node_id="n1",
        run_id="r-1",
        root=Path("/data/shop"),
        nats_url="nats://alice:pw@nats1:4222,nats://tok@nats2:4222",
        pass_env=pass_env,
    )


def test_go_names_and_no_node_secrets() -> None:
    env = env_for({"env": {"COLOR": "blue"}})
    assert env["NARUN_APP_NAME"] == "shop"
    assert env["NARUN_INSTANCE_ID"] == "shop-2"
    assert env["NARUN_REPLICA_INDEX"] == "2"
    assert env["NARUN_NODE_ID"] == "n1"
    assert env["NARUN_RUN_ID"] == "r-1"
    assert env["NARUN_NATS_URL"] == "nats://nats1:4222,nats://nats2:4222"
    assert env["COLOR"] == "blue"
    assert env["PATH"] == "/usr/bin"
    assert env["LC_ALL"] == "C.UTF-8"
    for secret in ("NARUN_NATS_PASSWORD", "AWS_SECRET_ACCESS_KEY", "EXTRA", "PYTHONPATH"):
        assert secret not in env
    assert "node-secret" not in "".join(env.values())


def test_pass_env_lets_named_variables_through() -> None:
    env = env_for({}, pass_env=("EXTRA", "PYTHONPATH", "MISSING"))
    assert env["EXTRA"] == "passed"
    assert env["PYTHONPATH"] == "/node/src"
    assert "MISSING" not in env


def test_an_artifact_venv_never_sees_the_node_s_python_path() -> None:
    env = env_for({"artifact": ARTIFACT}, pass_env=("PYTHONPATH",))
    assert "PYTHONPATH" not in env
    own = env_for({"artifact": ARTIFACT, "env": {"PYTHONPATH": "lib"}}, pass_env=("PYTHONPATH",))
    assert own["PYTHONPATH"] == "lib"  # the spec may set it


def test_strip_credentials() -> None:
    assert strip_credentials("nats://a:b@h:4222") == "nats://h:4222"
    assert strip_credentials("tls://h:4222") == "tls://h:4222"


def test_an_app_runs_with_narun_serve() -> None:
    spec = parse_spec({"name": "shop", "app": "shop.main:app", "args": ["--concurrency", "5"]})
    run = launch(spec, root=Path("/r"), python="/venv/bin/python", executable=None,
                 nats_url="nats://u:p@h:1", env={})  # fmt: skip
    assert run.argv == (
        "/venv/bin/python", "-m", "narun", "serve", "shop.main:app", "--service", "shop",
        "--nats-url", "nats://h:1", "--interface", "auto", "--app-dir", "/r",
        "--concurrency", "5",
    )  # fmt: skip
    assert run.cwd == Path("/r")


EXE = {**ARTIFACT, "kind": "executable"}


@pytest.mark.parametrize(
    ("data", "executable", "argv"),
    [
        ({"command": "./srv --port 8080", "args": ["-v"]}, None, ("./srv", "--port", "8080", "-v")),
        ({"artifact": EXE, "args": ["-x"]}, "/c/srv", ("/c/srv", "-x")),
    ],
)
def test_commands_and_executables(
    data: dict[str, object], executable: str | None, argv: tuple[str, ...]
) -> None:
    spec = parse_spec({"name": "srv", **data})
    run = launch(spec, root=Path("/r"), python="py", executable=executable, nats_url="", env={})
    assert run.argv == argv
