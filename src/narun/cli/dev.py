"""``narun dev``: a whole local stack in one command (nats-server, gateway, consumers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import click

from narun.transport.server import NATSServer, NATSServerError

__all__ = ["dev"]


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


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
@click.option("--banner", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def dev(
    config_path: Path,
    http_apps: tuple[str, ...],
    grpc_apps: tuple[str, ...],
    banner: Path | None,
) -> None:
    """Start nats-server, the gateway and consumers; Ctrl-C stops them all."""
    from narun.config.gateway import load_config

    config = load_config(config_path)
    url = urlsplit(config.nats_url.split(",")[0])
    nats = NATSServer(host=url.hostname or "127.0.0.1", port=url.port or 4222)
    try:
        nats.start()
    except NATSServerError as exc:
        raise click.ClickException(
            f"{exc} (is something already listening on {nats.host}:{nats.port}?)"
        ) from None
    click.echo(f"nats-server   {nats.url}  (pid {nats.pid})")
    env = dict(os.environ, NARUN_NATS_URL=nats.url)
    python = [sys.executable, "-m", "narun"]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for pair in http_apps:
            service, ref = _parse_pair(pair, "--serve")
            cmd = [*python, "serve", ref, "--service", service]
            procs.append((f"consumer {service}", _spawn(cmd, env)))
        for pair in grpc_apps:
            service, ref = _parse_pair(pair, "--serve-grpc")
            cmd = [*python, "serve", ref, "--service", service, "--interface", "grpc"]
            procs.append((f"consumer {service}", _spawn(cmd, env)))
        gw = _spawn([*python, "gateway", "-c", str(config_path)], env)
        procs.append(("gateway", gw))
        from narun.config.addr import parse_addr

        host, port = parse_addr(config.server_addr)
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if not _wait_for_port(host, port, gw, 20):
            raise click.ClickException("the gateway did not start (see its log above)")
        time.sleep(0.3)  # let consumers finish registering before printing
        for name, proc in procs:
            if proc.poll() is not None:
                raise click.ClickException(f"{name} exited with code {proc.returncode}")
            click.echo(f"{name:<13} pid {proc.pid}")
        click.echo(f"gateway       http://{host}:{port}")
        if banner is not None:
            click.echo(banner.read_text())
        click.echo("Ctrl-C stops everything.")
        _wait_for_signal(procs)
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(procs):
            try:
                proc.wait(timeout=35)
            except subprocess.TimeoutExpired:
                proc.kill()
        nats.stop()
        click.echo("stopped.")


def _wait_for_signal(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop:
            for name, proc in procs:
                if proc.poll() is not None:
                    click.echo(f"{name} exited with code {proc.returncode}; stopping", err=True)
                    return
            time.sleep(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only `narun dev`, which then stops each child
    # with one SIGTERM (a second signal would make them skip their graceful drain).
    return subprocess.Popen(cmd, env=env, start_new_session=True)
