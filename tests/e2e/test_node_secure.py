"""The node runner's security features end to end: secrets, file mounts, isolation, limits.

One JetStream nats-server and one ``narun node`` holding a master key (from its environment,
the way that leaked into apps in Go narun). Apps are small ``command:`` scripts that report
what they see as output lines; the tests read those through ``narun logs``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from narun.node import launcher as launch
from narun.node.secrets import new_master_key
from narun.transport.server import NATSServer
from tests.e2e.test_node import FAST, _collect, _kv, instances, narun, ok, wait_until
from tests.support import Proc, stopped_on_error

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs a node running as root (mount and network namespaces, cgroups, another user)",
)
NEEDS_LANDLOCK = pytest.mark.skipif(launch.landlock_abi() < 1, reason="this kernel has no Landlock")

SECRET_VALUE = "pa55-" + os.urandom(8).hex()
"""A value that must appear in the app's environment and nowhere else."""

REPORT = """\
import hashlib, os, sys, time
value = os.environ.get("DB_PASSWORD", "")
print("secret-sha", hashlib.sha256(value.encode()).hexdigest(), flush=True)
print("env-names", ",".join(sorted(os.environ)), flush=True)
time.sleep(3600)
"""


@dataclass
class Node:
    url: str
    tmp: Path
    proc: Proc
    key_file: Path


def _start(url: str, tmp: Path, node_id: str, env: dict[str, str], *extra: str) -> Proc:
    proc = Proc(
        ["node", "--node-id", node_id, "--data-dir", str(tmp / node_id), "--nats-url", url,
         "--metrics-addr", "", *FAST, *extra],
        tmp / f"{node_id}.log",
        env=env,
    )  # fmt: skip
    from tests.e2e.test_node import live_nodes

    with stopped_on_error(proc):
        wait_until(lambda: node_id in live_nodes(url), 20, f"node {node_id} up", proc)
    return proc


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("secure")
    key = new_master_key().text()
    key_file = tmp / "master.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    with NATSServer(extra_config=f'jetstream {{ store_dir: "{tmp / "js"}" }}') as server:
        proc = _start(server.url, tmp, "s1", {"NARUN_MASTER_KEY": key, "NODE_SECRET": "s3cret"})
        try:
            yield Node(server.url, tmp, proc, key_file)
        finally:
            proc.stop()


def _script(node: Node, name: str, text: str) -> Path:
    path = node.tmp / f"{name}.py"
    path.write_text(text)
    return path


def _deploy(node: Node, spec: dict[str, Any]) -> None:
    path = node.tmp / f"{spec['name']}.yaml"
    path.write_text(json.dumps(spec))
    ok(narun(node.url, "deploy", "-f", str(path)))


def _log_text(node: Node, app: str) -> str:
    return ok(narun(node.url, "logs", app, "-n", "1000"))


def _set_secret(node: Node, name: str, value: str) -> str:
    import subprocess

    from tests.support import ROOT

    result = subprocess.run(
        [sys.executable, "-m", "narun", "secret", "set", name, "--nats-url", node.url,
         "--master-key-file", str(node.key_file)],
        input=value + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def _set_secret_quietly(node: Node, name: str, value: str) -> None:
    _set_secret(node, name, value)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _everything_readable(node: Node, app: str, extra: list[str]) -> str:
    """Every log, status, state and listing where a secret could leak."""
    parts = [node.proc.output(), _log_text(node, app), *extra]
    parts.append(ok(narun(node.url, "apps", "info", app)))
    parts.append(ok(narun(node.url, "apps", "ls")))
    parts.append(ok(narun(node.url, "secret", "ls")))
    parts.append(json.dumps(_kv(node.url, "node-runner-states")))
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parts.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    return "\n".join(parts)


def test_a_secret_reaches_the_app_s_env_and_nowhere_else(node: Node) -> None:
    app = "secret-app"
    out = _set_secret(node, "db-pass", SECRET_VALUE)
    assert SECRET_VALUE not in out
    listed = ok(narun(node.url, "secret", "ls"))
    assert "db-pass" in listed
    stored = _kv(node.url, "narun-secrets")["db-pass"]
    assert set(stored) == {"name", "ciphertext", "nonce", "created_at", "updated_at"}
    script = _script(node, app, REPORT)
    _deploy(
        node,
        {
            "name": app,
            "command": [sys.executable, str(script)],
            "ready_seconds": 0.5,
            "stop_grace_seconds": 2,
            "env": [{"name": "DB_PASSWORD", "valueFromSecret": "db-pass"}],
        },
    )
    wait_until(
        lambda: (
            f"secret-sha {_sha(SECRET_VALUE)}" in (t := _log_text(node, app)) and "env-names" in t
        ),
        30,
        "secret in env",
    )
    names = (
        next(line for line in _log_text(node, app).splitlines() if "env-names" in line)
        .split("env-names ")[1]
        .split(",")
    )
    assert "NARUN_MASTER_KEY" not in names
    assert "NODE_SECRET" not in names
    assert set(names) <= {
        "PATH", "HOME", "LANG", "TZ", "TMPDIR", "PYTHONUNBUFFERED", "DB_PASSWORD",
        "NARUN_APP_NAME", "NARUN_INSTANCE_ID", "NARUN_NODE_ID", "NARUN_REPLICA_INDEX",
        "NARUN_RUN_ID", "NARUN_INSTANCE_ROOT", "NARUN_WORK_DIR", "NARUN_NATS_URL", "LC_ALL",
        "LC_CTYPE",
    }  # fmt: skip
    [before] = wait_until(
        lambda: [i for i in instances(node.url, app) if i["status"] == "running"], 20, "running"
    )

    # a changed secret restarts the instance that uses it, with the new value
    new_value = SECRET_VALUE + "-rotated"
    updates = _collect(
        node.url,
        f"status.{app}.*",
        lambda: _set_secret_quietly(node, "db-pass", new_value),
        lambda doc: doc["status"] == "stopped" and doc["run_id"] == before["run_id"],
    )
    wait_until(
        lambda: f"secret-sha {_sha(new_value)}" in _log_text(node, app), 30, "new secret in env"
    )
    seq = [(u["status"], u["run_id"] == before["run_id"]) for u in updates]
    # rolling: the new run is running before the old one is stopped
    assert seq.index(("running", False)) < seq.index(("stopping", True)) < len(seq) - 1
    seen = _everything_readable(node, app, [json.dumps(updates)])
    assert SECRET_VALUE not in seen
    assert new_value not in seen
    ok(narun(node.url, "apps", "rm", app))


def test_a_missing_secret_fails_the_instance_and_names_it(node: Node) -> None:
    app = "nosecret-app"
    _deploy(
        node,
        {
            "name": app,
            "command": [sys.executable, "-c", "import time; time.sleep(60)"],
            "env": {"TOKEN": {"valueFromSecret": "never-set"}},
        },
    )

    def failed() -> dict[str, Any] | None:
        runs = [i for i in instances(node.url, app) if i["status"] == "failed"]
        return runs[0] if runs else None

    run = wait_until(failed, 30, "status failed")
    assert "env TOKEN: no secret named 'never-set'" in run["error"]
    ok(narun(node.url, "apps", "rm", app))


def test_secret_rm_and_no_value_on_the_command_line(node: Node) -> None:
    _set_secret(node, "to-remove", "x-value")
    ok(narun(node.url, "secret", "rm", "to-remove"))
    assert "to-remove" not in ok(narun(node.url, "secret", "ls"))
    again = narun(node.url, "secret", "rm", "to-remove")
    assert again.returncode == 1
    assert "no secret named 'to-remove'" in again.stderr
    as_arg = narun(node.url, "secret", "set", "x", "the-value")
    assert as_arg.returncode == 2  # no such argument: values never go on the command line


def _wait_lines(node: Node, app: str, *wanted: str, timeout: float = 40) -> str:
    def check() -> str | None:
        text = _log_text(node, app)
        return text if all(w in text for w in wanted) else None

    result: str = wait_until(check, timeout, f"log lines {wanted} of {app}")
    return result


def _status_of(node: Node, app: str, status: str, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        runs = [i for i in instances(node.url, app) if i["status"] == status]
        return runs[0] if runs else None

    result: dict[str, Any] = wait_until(check, timeout, f"{app} {status}")
    return result


def _py(code: str, python: str = sys.executable) -> list[str]:
    return [python, "-c", code]


FILE_CHECK = """\
import errno, os, time
path = os.path.join(os.environ["NARUN_WORK_DIR"], "conf", "app.txt")
print("mount-read", open(path).read().strip(), flush=True)
for attempt in ("write", "chmod-write"):
    try:
        if attempt == "chmod-write":
            os.chmod(path, 0o666)
        with open(path, "a") as f:
            f.write("changed")
        print("mount", attempt, "ALLOWED", flush=True)
    except OSError as exc:
        print("mount", attempt, "refused", errno.errorcode[exc.errno], flush=True)
time.sleep(3600)
"""


@NEEDS_ROOT
def test_a_file_mount_is_readable_and_not_writable(node: Node) -> None:
    src = node.tmp / "settings.txt"
    src.write_text("colour=teal\n")
    out = ok(narun(node.url, "files", "add", "app-settings", str(src)))
    assert "stored app-settings" in out
    listed = ok(narun(node.url, "files", "ls"))
    assert "app-settings" in listed
    assert "settings.txt" in listed
    assert "SHA-256=" in listed
    app = "mount-app"
    _deploy(
        node,
        {
            "name": app,
            "command": _py(FILE_CHECK),
            "ready_seconds": 0.5,
            "stop_grace_seconds": 2,
            "mounts": [{"path": "conf/app.txt", "source": {"objectStore": "app-settings"}}],
        },
    )
    text = _wait_lines(node, app, "mount-read colour=teal", "mount chmod-write")
    assert "mount write refused EROFS" in text
    assert "mount chmod-write refused EROFS" in text
    assert "ALLOWED" not in text
    ok(narun(node.url, "apps", "rm", app))
    ok(narun(node.url, "files", "rm", "app-settings"))
    assert "app-settings" not in ok(narun(node.url, "files", "ls"))


def test_a_mount_of_a_missing_file_fails_and_names_it(node: Node) -> None:
    app = "nomount-app"
    _deploy(
        node,
        {
            "name": app,
            "command": _py("import time; time.sleep(60)"),
            "mounts": [{"path": "x.txt", "source": {"objectStore": "never-added"}}],
        },
    )
    run = _status_of(node, app, "failed")
    assert "no file named 'never-added'" in run["error"]
    ok(narun(node.url, "apps", "rm", app))


LANDLOCK_CHECK = """\
import os, sys, time
work = os.environ["NARUN_WORK_DIR"]
with open(os.path.join(work, "inside.txt"), "w") as f:
    f.write("ok")
print("inside written", flush=True)
for target in sys.argv[1:]:
    try:
        with open(target, "w") as f:
            f.write("escaped")
        print("outside ALLOWED", target, flush=True)
    except PermissionError:
        print("outside refused", target, flush=True)
try:
    os.listdir("/root")
    print("listdir ALLOWED", flush=True)
except PermissionError:
    print("listdir refused", flush=True)
time.sleep(3600)
"""


@NEEDS_LANDLOCK
def test_landlock_stops_a_write_outside_the_allowed_paths(node: Node) -> None:
    app = "landlock-app"
    outside = node.tmp / "outside"
    outside.mkdir()
    target = outside / "escape.txt"
    _deploy(
        node,
        {
            "name": app,
            "command": [*_py(LANDLOCK_CHECK), str(target), "/tmp/narun-landlock-escape.txt"],
            "ready_seconds": 0.5,
            "stop_grace_seconds": 2,
            "mode": "landlock",
        },
    )
    text = _wait_lines(node, app, "inside written", "listdir")
    assert f"outside refused {target}" in text
    assert "outside refused /tmp/narun-landlock-escape.txt" in text  # no `tmp` group
    assert "listdir refused" in text
    assert "ALLOWED" not in text
    assert not target.exists()
    assert (node.tmp / "s1" / "instances" / f"{app}-0" / "inside.txt").read_text() == "ok"
    ok(narun(node.url, "apps", "rm", app))


HOG = """\
import time
print("allocating", flush=True)
chunks = []
for i in range(400):
    chunks.append(bytearray(1024 * 1024))
    for j in range(0, len(chunks[-1]), 4096):
        chunks[-1][j] = 1
print("ALLOCATED 400 MiB", flush=True)
time.sleep(3600)
"""


@NEEDS_ROOT
def test_a_memory_hungry_app_gets_oom(node: Node) -> None:
    app = "hog-app"
    spec: dict[str, Any] = {
        "name": app,
        "command": _py(HOG),
        "ready_seconds": 0.5,
        "memoryMB": 32,
        "memoryMaxMB": 64,
        "cpuCores": 1,
        "restart": {"max_restarts": 1, "backoff_seconds": 0.2},
    }
    updates = _collect(
        node.url,
        f"status.{app}.*",
        lambda: _deploy(node, spec),
        lambda doc: doc["status"] == "failed",
    )
    ooms = [u for u in updates if u["status"] == "oom"]
    assert ooms, updates
    assert "memory limit (64 MiB)" in ooms[0]["error"]
    assert ooms[0]["exit_code"] == -9
    assert "ALLOCATED" not in _log_text(node, app)
    info = ok(narun(node.url, "apps", "info", app))
    assert "killed at its memory limit" in info
    ok(narun(node.url, "apps", "rm", app))
    from narun.node.cgroups import hierarchies

    leftovers = [p for h in hierarchies() for p in h.own.glob(f"narun-s1-{app}-*")]
    assert not leftovers, leftovers  # each run's cgroups are removed when it ends


NET_CHECK = """\
import socket, sys, time
declared, other = int(sys.argv[1]), int(sys.argv[2])
def attempt(host, port):
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(b"ping\\n")
            return "connected " + s.recv(100).decode().strip()
    except OSError as exc:
        return "blocked " + type(exc).__name__
print("declared", attempt("127.0.0.1", declared), flush=True)
print("undeclared", attempt("127.0.0.1", other), flush=True)
print("outbound", attempt("192.0.2.1", 80), flush=True)
time.sleep(3600)
"""


@NEEDS_ROOT
def test_nonet_blocks_outbound_and_allows_the_declared_port(node: Node) -> None:
    import socket
    import threading

    from tests.support import free_port

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    declared = server.getsockname()[1]
    other = socket.socket()  # listening on the host too, but not declared
    other.bind(("127.0.0.1", 0))
    other.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(b"pong from host\n")

    threading.Thread(target=serve, daemon=True).start()
    app = "nonet-app"
    try:
        _deploy(
            node,
            {
                "name": app,
                "command": [*_py(NET_CHECK), str(declared), str(other.getsockname()[1])],
                "ready_seconds": 0.5,
                "stop_grace_seconds": 2,
                "nonet": {"localPorts": [{"port": declared}]},
            },
        )
        text = _wait_lines(node, app, "declared", "undeclared", "outbound")
        assert "declared connected pong from host" in text
        assert "undeclared blocked ConnectionRefusedError" in text
        assert "outbound blocked" in text
        assert free_port()  # the host's own network is untouched
    finally:
        server.close()
        other.close()
        narun(node.url, "apps", "rm", app)


USER_CHECK = """\
import os, time
print("ids", os.getuid(), os.getgid(), os.getgroups(), os.environ["USER"], flush=True)
try:
    open("/etc/shadow").read()
    print("shadow ALLOWED", flush=True)
except PermissionError:
    print("shadow refused", flush=True)
time.sleep(3600)
"""


@NEEDS_ROOT
def test_an_instance_runs_as_the_given_user(node: Node) -> None:
    app = "user-app"
    _deploy(
        node,
        {
            "name": app,
            "command": _py(USER_CHECK, python="/usr/bin/python3"),
            "ready_seconds": 0.5,
            "stop_grace_seconds": 2,
            "user": "nobody",
        },
    )
    text = _wait_lines(node, app, "ids", "shadow")
    assert "ids 65534 65534 [65534] nobody" in text
    assert "shadow refused" in text
    ok(narun(node.url, "apps", "rm", app))


@NEEDS_ROOT
def test_an_unknown_user_fails_with_the_reason(node: Node) -> None:
    app = "nouser-app"
    _deploy(
        node,
        {"name": app, "command": _py("import time; time.sleep(60)"), "user": "no-such-user-x"},
    )
    run = _status_of(node, app, "failed")
    assert "user: no user 'no-such-user-x' on this node" in run["error"]
    ok(narun(node.url, "apps", "rm", app))


@NEEDS_ROOT
def test_a_limit_the_node_cannot_apply_fails_the_instance_and_says_why(node: Node) -> None:
    app = "badcgroup-app"
    _deploy(
        node,
        {
            "name": app,
            "command": _py("import time; time.sleep(60)"),
            "memoryMB": 64,
            "cgroupParent": "/nonexistent/parent",
        },
    )
    run = _status_of(node, app, "failed")
    assert run["error"].startswith("memoryMB: cannot create the cgroup /nonexistent/parent/")
    assert run["pid"] is None  # nothing ran without its limit
    ok(narun(node.url, "apps", "rm", app))
