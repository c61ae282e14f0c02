"""``narun node``, ``narun deploy``, ``narun apps``, ``narun logs``, ``narun nodes``.

The node runner's commands. Each takes the NATS URL and authentication flags the way
``narun serve`` does; what they do in NATS lives in :mod:`narun.node.client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from nats.aio.client import Client

from narun.cli.natsopts import auth_from_flags, nats_auth_options
from narun.errors import ConfigError, NarunError

if TYPE_CHECKING:
    from narun.node.spec import AppSpec

__all__ = ["apps", "deploy", "logs", "node", "nodes"]

T = TypeVar("T")


def _nats_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = nats_auth_options(f)
    return click.option(
        "--nats-url",
        envvar="NARUN_NATS_URL",
        default="nats://localhost:4222",
        show_default=True,
        help="NATS server(s), comma-separated (JetStream enabled).",
    )(f)


def _run(nats_url: str, work: Callable[[Client], Awaitable[T]], *, name: str) -> T:
    from narun.transport.connect import connect, drain

    async def main() -> T:
        nc = await connect(nats_url, name=name, auth=auth_from_flags(), connect_attempts=1)
        try:
            return await work(nc)
        finally:
            await drain(nc)

    try:
        return asyncio.run(main())
    except NarunError as exc:
        raise click.ClickException(str(exc)) from None


def _table(rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _pairs(values: Sequence[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        out[key] = val
    return out


# --- narun node ---------------------------------------------------------------------------


@click.command()
@click.option("--node-id", default=socket.gethostname(), show_default=True, help="Unique per node.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="./narun-data",
    show_default=True,
    help="Artifacts, virtualenvs, instance directories.",
)
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option(
    "--metrics-addr",
    default="127.0.0.1:9100",
    show_default=True,
    help="/metrics, /healthz, /readyz ('' turns it off).",
)
@click.option("--heartbeat", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option(
    "--node-expiry",
    type=click.FloatRange(min=1),
    default=45.0,
    show_default=True,
    help="Seconds without heartbeat before a node's instances move (set on bucket creation).",
)
@click.option(
    "--reconcile-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True
)
@click.option(
    "--pass-env",
    multiple=True,
    metavar="NAME",
    help="A variable of the node's environment that instances get too (repeatable).",
)
@click.option("--log-max-bytes", type=click.IntRange(min=1024), default=100 * 1024 * 1024)
@click.option("--log-max-age", type=click.FloatRange(min=1), default=7 * 24 * 3600.0)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text")
@click.option(
    "--master-key-file",
    envvar="NARUN_MASTER_KEY_PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Master key decrypting valueFromSecret (base64 of 32 bytes); or $NARUN_MASTER_KEY.",
)
@_nats_options
def node(
    node_id: str,
    data_dir: Path,
    labels: tuple[str, ...],
    metrics_addr: str,
    heartbeat: float,
    node_expiry: float,
    reconcile_interval: float,
    pass_env: tuple[str, ...],
    log_max_bytes: int,
    log_max_age: float,
    log_level: str,
    log_format: str,
    master_key_file: Path | None,
    nats_url: str,
) -> None:
    """Run a node: deploy, supervise and report the apps NATS places here."""
    from narun.node.runner import NodeOptions, NodeRunner
    from narun.node.secrets import SecretError, load_master_key
    from narun.observe.log import configure

    configure(level=log_level, fmt="json" if log_format == "json" else "text", name="node")
    if heartbeat >= node_expiry:
        raise click.BadParameter("must be shorter than --node-expiry", param_hint="--heartbeat")
    try:
        master_key = load_master_key(master_key_file)
    except SecretError as exc:
        raise click.ClickException(str(exc)) from None
    os.environ.pop("NARUN_MASTER_KEY", None)  # no child of the node (pip, apps) inherits it
    try:
        options = NodeOptions(
            master_key=master_key,
            node_id=node_id,
            data_dir=data_dir.resolve(),
            nats_url=nats_url,
            nats_auth=auth_from_flags(),
            labels=_pairs(labels, "--label"),
            heartbeat=heartbeat,
            node_expiry=node_expiry,
            reconcile_interval=reconcile_interval,
            metrics_addr=metrics_addr,
            pass_env=pass_env,
            log_max_bytes=log_max_bytes,
            log_max_age=log_max_age,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await NodeRunner(options).run(stop)

    try:
        asyncio.run(main())
    except NarunError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start the node: {exc}") from None


# --- narun deploy ---------------------------------------------------------------------------


@click.command()
@click.argument(
    "source", required=False, type=click.Path(exists=True, path_type=Path), metavar="[DIR|FILE]"
)
@click.option(
    "-f", "--file", "spec_file", type=click.Path(dir_okay=False, path_type=Path), help="Spec YAML."
)
@click.option("--name", help="App name (spec 'name').")
@click.option("--app", "app_ref", metavar="PKG.MOD:APP", help="ASGI/WSGI app to serve.")
@click.option("--service", help="Micro service name (default: the app name).")
@click.option("--command", help="A program to run instead of --app.")
@click.option("--replicas", type=int, help="Instances over all nodes.")
@click.option("--node", "pins", multiple=True, metavar="ID=COUNT", help="Pin instances to a node.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Node selector.")
@click.option("--env", "env", multiple=True, metavar="NAME=VALUE", help="Repeatable.")
@click.option("--tag", help="A version label of your choice.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    help="Wait up to this many seconds until every instance of the new version runs.",
)
@_nats_options
def deploy(
    source: Path | None,
    spec_file: Path | None,
    name: str | None,
    app_ref: str | None,
    service: str | None,
    command: str | None,
    replicas: int | None,
    pins: tuple[str, ...],
    labels: tuple[str, ...],
    env: tuple[str, ...],
    tag: str | None,
    wait: float,
    nats_url: str,
) -> None:
    """Deploy an app: a Python project DIR, an executable FILE, or what is installed on nodes.

    The spec comes from -f and the flags (flags win); it is checked before anything is
    stored.
    """
    from narun.node.spec import load_spec, parse_spec

    try:
        data: dict[str, Any] = load_spec(spec_file) if spec_file else {}
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    flags: dict[str, Any] = {
        "name": name,
        "app": app_ref,
        "service": service,
        "command": command,
        "replicas": replicas,
        "tag": tag,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if pins:
        data["nodes"] = {k: _count(v, "--node") for k, v in _pairs(pins, "--node").items()}
    if labels:
        data["labels"] = {**data.get("labels", {}), **_pairs(labels, "--label")}
    if env:
        data["env"] = {**data.get("env", {}), **_pairs(env, "--env")}
    kind = None
    if source is not None:
        kind = "python" if source.is_dir() else "executable"
        if kind == "executable" and not os.access(source, os.X_OK):
            raise click.BadParameter(f"{source} is not a directory nor an executable file")
        data["artifact"] = {"object": "-", "digest": "-", "kind": kind}
    where = str(spec_file) if spec_file else "deploy"
    try:
        spec = parse_spec(data, source=where)  # every spec problem before any packing
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    async def work(nc: Client) -> str:
        from narun.node import client

        final = spec
        if source is not None:
            final = await _pack_and_upload(nc, source, spec.name, data, where)
        await client.put_app(nc, final)
        count = f"{final.replicas} replicas"
        if final.max_replicas is not None:
            count = f"{final.min_replicas} to {final.max_replicas} instances, on demand"
        click.echo(f"deployed {final.name} version {final.version} ({count})")
        if wait:
            version = final.version
            replicas = final.min_replicas if final.autoscaled else final.replicas

            def done(rows: list[client.AppRow]) -> bool:
                row = next((r for r in rows if r.spec.name == final.name), None)
                return (
                    row is not None
                    and row.spec.version == version
                    and (
                        row.running >= replicas
                        and sum(1 for _, i in row.instances if i.version != version) == 0
                    )
                )

            if not await client.wait_for(nc, done, timeout=wait):
                raise NarunError(f"not every instance of {final.name} runs after {wait:g}s")
            click.echo(f"{final.name}: {replicas} instances running")
        return final.version

    _run(nats_url, work, name="narun deploy")


def _count(value: str, option: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(
            f"expected ID=COUNT, got count {value!r}", param_hint=option
        ) from None


async def _pack_and_upload(
    nc: Client, source: Path, name: str, data: dict[str, Any], where: str
) -> AppSpec:
    from narun.node import artifact
    from narun.node.spec import parse_spec

    with tempfile.TemporaryDirectory(prefix="narun-pack-") as tmp:
        click.echo(f"packing {source} ...")
        try:
            packed = await asyncio.to_thread(artifact.pack, source, work_dir=Path(tmp))
            js = nc.jetstream(timeout=60)
            obj = await artifact.upload(js, packed, name=name)
        except artifact.ArtifactError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"uploaded {obj} ({packed.size} bytes, {packed.digest})")
    data["artifact"] = {"object": obj, "digest": packed.digest, "kind": packed.kind}
    return parse_spec(data, source=where)


# --- narun apps -----------------------------------------------------------------------------


@click.group()
def apps() -> None:
    """List, describe and remove deployed apps."""


@apps.command("ls")
@_nats_options
def apps_ls(nats_url: str) -> None:
    """NAME, VERSION, DESIRED, RUNNING, NODES of every app."""
    from narun.node import client

    rows = _run(nats_url, client.app_rows, name="narun apps")
    table = [["NAME", "VERSION", "DESIRED", "RUNNING", "NODES"]]
    for r in rows:
        table.append(
            [r.spec.name, r.spec.version, str(r.spec.replicas), str(r.running), ",".join(r.nodes)]
        )
    _table(table)


@apps.command("info")
@click.argument("name")
@_nats_options
def apps_info(name: str, nats_url: str) -> None:
    """The spec of NAME and every instance: node, status, restarts, last exit."""
    from narun.node import client
    from narun.node.spec import dump_spec

    row = _run(nats_url, lambda nc: client.get_app(nc, name), name="narun apps")
    click.echo(f"{row.spec.name}  version {row.spec.version}")
    click.echo(dump_spec(row.spec).decode().rstrip())
    click.echo("")
    table = [["INSTANCE", "NODE", "VERSION", "STATUS", "PID", "RESTARTS", "EXIT", "SINCE"]]
    for node_id, i in row.instances:
        table.append(
            [
                i.instance_id,
                node_id,
                i.version,
                i.status,
                str(i.pid or "-"),
                str(i.restarts),
                "-" if i.exit_code is None else str(i.exit_code),
                i.since[:19],
            ]
        )
    _table(table)
    for node_id, i in row.instances:
        if i.error and i.status in ("failed", "crashed", "oom"):
            click.echo(f"\n{i.instance_id} on {node_id}: {i.status}: {i.error}")
            for line in i.last_lines:
                click.echo(f"  | {line}")


@apps.command("rm")
@click.argument("name")
@click.option(
    "--wait", type=click.FloatRange(min=0), default=0, help="Wait until every instance stopped."
)
@_nats_options
def apps_rm(name: str, wait: float, nats_url: str) -> None:
    """Remove NAME: every node stops its instances."""
    from narun.node import client

    async def work(nc: Client) -> None:
        await client.remove_app(nc, name)
        click.echo(f"removed {name}")
        if wait:

            async def gone() -> bool:
                states = await client.list_nodes(nc)
                return not any(i.app_name == name for s in states for i in s.instances)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while not await gone():
                if loop.time() >= deadline:
                    raise NarunError(f"instances of {name} still run after {wait:g}s")
                await asyncio.sleep(0.5)
            click.echo(f"{name}: every instance stopped")

    _run(nats_url, work, name="narun apps")


# --- narun logs, narun nodes ------------------------------------------------------------------


@click.command()
@click.argument("app", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--node", "node_id", help="Only this node's instances.")
@click.option("--instance", help="Only this instance (e.g. shop-0).")
@_nats_options
def logs(
    app: str | None,
    follow: bool,
    lines: int,
    node_id: str | None,
    instance: str | None,
    nats_url: str,
) -> None:
    """Output lines of APP's instances (every app without APP): the last ones, then -f."""
    from narun.node.client import stream_logs
    from narun.node.schema import LogLine

    def show(line: LogLine) -> None:
        tag = "" if line.stream == "stdout" else " [stderr]"
        click.echo(f"{line.timestamp} {line.instance_id}@{line.node_id}{tag} {line.message}")

    async def work(nc: Client) -> None:
        await stream_logs(
            nc, show, app=app, node=node_id, instance=instance, last=lines, follow=follow
        )

    with contextlib.suppress(KeyboardInterrupt):
        _run(nats_url, work, name="narun logs")


@click.group()
def nodes() -> None:
    """The nodes that run apps."""


@nodes.command("ls")
@_nats_options
def nodes_ls(nats_url: str) -> None:
    """NODE, STATUS, LAST SEEN, INSTANCES, PLATFORM, LABELS of every live node."""
    from narun.node import client

    states = _run(nats_url, client.list_nodes, name="narun nodes")
    table = [["NODE", "STATUS", "LAST SEEN", "INSTANCES", "PLATFORM", "LABELS"]]
    now = datetime.now(UTC)
    for s in states:
        try:
            seen = datetime.fromisoformat(s.last_seen.replace("Z", "+00:00"))
            ago = f"{(now - seen).total_seconds():.0f}s ago"
        except ValueError:
            ago = s.last_seen
        table.append(
            [
                s.node_id,
                s.status,
                ago,
                str(len(s.managed_instances)),
                f"{s.os}/{s.arch} py{s.python}",
                ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or "-",
            ]
        )
    _table(table)
    if not states:
        click.echo("(no live node)", err=True)
        sys.exit(0)
