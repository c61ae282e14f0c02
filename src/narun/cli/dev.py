"""``narun dev``: a whole local stack in one command (nats-server, gateway, consumers, nodes)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import click

from narun.errors import ConfigError
from narun.supervise import Child, Group, SuperviseError
from narun.transport.server import NATSServer, NATSServerError

__all__ = ["dev"]

_GRACE = 35.0
"""Seconds a child gets to drain after SIGTERM before it is killed."""


def _parse_pair(value: str, option: str) -> tuple[str, str]:
    name, sep, ref = value.partition("=")
    if not sep or not name or not ref:
        raise click.BadParameter(f"expected SERVICE=pkg.mod:app, got {value!r}", param_hint=option)
    return name, ref


@click.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Gateway YAML config.",
)
@click.option(
    "--serve",
    "http_apps",
    multiple=True,
    metavar="SERVICE=PKG.MOD:APP",
    help="An ASGI/WSGI app to serve as SERVICE (repeatable).",
)
@click.option(
    "--serve-grpc",
    "grpc_apps",
    multiple=True,
    metavar="SERVICE=PKG.MOD:REGISTER",
    help="gRPC servicers to serve as SERVICE (repeatable).",
)
@click.option(
    "--node",
    "node_ids",
    multiple=True,
    metavar="ID",
    help="Also run a node of the node runner with this ID (repeatable; JetStream is on).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".narun-dev",
    show_default=True,
    help="JetStream storage and the nodes' data (kept: deployed apps come back).",
)
@click.option(
    "--node-metrics-port",
    type=click.IntRange(0, 65535),
    default=9100,
    show_default=True,
    help="The nodes' /metrics on 127.0.0.1 from this port on, one each (0: off).",
)
@click.option("--banner", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def dev(
    config_path: Path,
    http_apps: tuple[str, ...],
    grpc_apps: tuple[str, ...],
    node_ids: tuple[str, ...],
    data_dir: Path,
    node_metrics_port: int,
    banner: Path | None,
) -> None:
    """Start nats-server, the gateway, consumers and nodes; Ctrl-C stops them all."""
    from narun.config.gateway import load_config

    # Until the children's signals are forwarded (below), a SIGTERM must still unwind
    # through the ``finally`` that stops what has been started, instead of killing
    # `narun dev` alone and orphaning its children.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    url = urlsplit(config.nats_url.split(",")[0])
    extra = ""
    if node_ids:
        store = (data_dir / "jetstream").resolve()
        extra = f'jetstream {{ store_dir: "{store}" }}'
    nats = NATSServer(host=url.hostname or "127.0.0.1", port=url.port or 4222, extra_config=extra)
    try:
        nats.start()
    except NATSServerError as exc:
        raise click.ClickException(
            f"{exc} (is something already listening on {nats.host}:{nats.port}?)"
        ) from None
    click.echo(f"nats-server   {nats.url}  (pid {nats.pid})")
    env = {"NARUN_NATS_URL": nats.url}
    python = [sys.executable, "-m", "narun"]
    # Each child leads a session of its own: Ctrl-C reaches only `narun dev`, which then
    # stops each child with one SIGTERM (a second signal would make them skip their drain).
    group = Group(grace=_GRACE)
    try:
        for pair in http_apps:
            service, ref = _parse_pair(pair, "--serve")
            cmd = [*python, "serve", ref, "--service", service]
            group.add(Child.start(cmd, env=env, name=f"consumer {service}"))
        for pair in grpc_apps:
            service, ref = _parse_pair(pair, "--serve-grpc")
            cmd = [*python, "serve", ref, "--service", service, "--interface", "grpc"]
            group.add(Child.start(cmd, env=env, name=f"consumer {service}"))
        for i, node_id in enumerate(node_ids):
            cmd = [*python, "node", "--node-id", node_id, "--data-dir", str(data_dir / node_id)]
            port = node_metrics_port + i if node_metrics_port else 0
            cmd += ["--metrics-addr", f"127.0.0.1:{port}" if port else ""]
            group.add(Child.start(cmd, env=env, name=f"node {node_id}"))
        gw = group.add(
            Child.start([*python, "gateway", "-c", str(config_path)], env=env, name="gateway")
        )
        from narun.config.addr import parse_addr

        host, port = parse_addr(config.server_addr)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        try:
            gw.wait_for_port(port, host=host, timeout=20)
        except SuperviseError:
            raise click.ClickException("the gateway did not start (see its log above)") from None
        time.sleep(0.3)  # let consumers finish registering before printing
        for child in group.children:
            if child.returncode is not None:
                raise click.ClickException(f"{child.name} exited with code {child.returncode}")
            click.echo(f"{child.name:<13} pid {child.pid}")
        click.echo(f"gateway       http://{host}:{port}")
        if banner is not None:
            click.echo(banner.read_text())
        click.echo("Ctrl-C stops everything.")
        with group.forward_signals():
            group.supervise(grace=_GRACE, on_exit=_tell_first_exit(group))
    finally:
        group.stop()
        nats.stop()
        click.echo("stopped.")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _tell_first_exit(group: Group) -> Callable[[Child], None]:
    def on_exit(child: Child) -> None:
        if child is group.first_exit:
            click.echo(f"{child.name} exited with code {child.returncode}; stopping", err=True)

    return on_exit
