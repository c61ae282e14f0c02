"""``narun admin``: the web page of every node, app and instance (through NATS)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click

from narun.cli.natsopts import auth_from_flags
from narun.cli.node import _nats_options
from narun.errors import NarunError

__all__ = ["admin"]


@click.command()
@click.option(
    "--addr", default="127.0.0.1:9200", show_default=True, help="Where the page is served."
)
@click.option(
    "--token-file",
    envvar="NARUN_ADMIN_TOKEN_FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The admin credential that stop/restart need (or $NARUN_ADMIN_TOKEN). Without: read-only.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@_nats_options
def admin(addr: str, token_file: Path | None, log_level: str, nats_url: str) -> None:
    """Serve the admin page: nodes, apps, instances, live logs, stop and restart."""
    from narun.node.admin import AdminApp
    from narun.observe.log import configure
    from narun.observe.ops import OpsServer
    from narun.transport.connect import connect, drain

    configure(level=log_level, fmt="text", name="admin")
    token = token_file.read_text().strip() if token_file else os.environ.get("NARUN_ADMIN_TOKEN")
    if token is not None and len(token) < 16:
        raise click.BadParameter(
            "the admin token must be at least 16 characters", param_hint="--token-file"
        )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        nc = await connect(nats_url, name="narun admin", auth=auth_from_flags())
        try:
            server = await OpsServer.start(AdminApp(nc, token=token or None), addr)
            mode = "stop/restart enabled" if token else "read-only"
            click.echo(f"narun admin on http://{addr}/ ({mode})", err=True)
            await stop.wait()
            await server.stop()
        finally:
            await drain(nc)

    try:
        asyncio.run(main())
    except NarunError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {addr}: {exc}") from None
