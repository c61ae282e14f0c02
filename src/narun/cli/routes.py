"""``narun routes ls``: the effective route table of a gateway config, static and claimed.

It reads the gateway's config file (its routes, its ``dynamic_routes`` rules and its NATS
settings), listens to the route claims for ``--wait`` seconds after asking every instance
to announce, and decides with the same :class:`~narun.gateway.routetable.RouteTable` a
gateway uses, so what it prints is what every gateway with that config routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click
from nats.aio.msg import Msg

from narun.errors import ConfigError, NarunError
from narun.protocol.claims import CLAIM_WILDCARD, QUERY_SUBJECT, ClaimError, decode_claim

if TYPE_CHECKING:  # pydantic and the gateway load only when the command runs
    from narun.config.gateway import GatewayConfig
    from narun.gateway.routetable import Resolution

__all__ = ["routes"]


@click.group()
def routes() -> None:
    """The gateway's route table: static routes and the ones services claim."""


@routes.command("ls")
@click.option("-c", "--config", "config_path", required=True, help="The gateway's config file.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0.1, max=60),
    default=1.5,
    show_default=True,
    metavar="SECONDS",
    help="How long to collect claims.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of columns.")
def ls(config_path: str, wait: float, as_json: bool) -> None:
    """List every route: kind, pattern, methods, service, source (static/claim), instances;
    then the refused claims and why."""
    from narun.config.gateway import load_config

    try:
        config = load_config(config_path)
        resolution = asyncio.run(_collect(config, wait))
    except (ConfigError, NarunError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(_document(resolution), indent=2))
        return
    rows = [("KIND", "ROUTE", "METHODS", "SERVICE", "SOURCE", "INSTANCES")]
    for e in resolution.entries:
        count = str(e.instances) if e.source == "claim" else "-"
        methods = ",".join(e.methods) or "*"
        rows.append((e.kind, e.pattern, methods, e.service, e.source, count))
    _print(rows)
    if resolution.refusals:
        click.echo("\nrefused claims:")
        refused = [("KIND", "ROUTE", "SERVICE", "REASON", "DETAIL")]
        refused += [(r.kind, r.pattern, r.service, r.reason, r.detail) for r in resolution.refusals]
        _print(refused)


async def _collect(config: GatewayConfig, wait: float) -> Resolution:
    from narun.gateway.routetable import RouteTable
    from narun.transport.connect import connect, drain

    table = RouteTable(config)
    nc = await connect(config.nats_url, name="narun routes", auth=config.nats_auth)

    async def on_claim(msg: Msg) -> None:
        with contextlib.suppress(ClaimError):  # gateways log these; the table shows the rest
            table.announce(decode_claim(msg.subject, msg.data), time.monotonic())

    try:
        await nc.subscribe(CLAIM_WILDCARD, cb=on_claim)
        await nc.publish(QUERY_SUBJECT, b"")
        await asyncio.sleep(wait)
        table.expire(time.monotonic())
        return table.resolve()
    finally:
        await drain(nc)


def _document(resolution: Resolution) -> dict[str, object]:
    return {
        "routes": [
            {
                "kind": e.kind,
                "route": e.pattern,
                "methods": list(e.methods),
                "service": e.service,
                "source": e.source,
                "instances": e.instances,
            }
            for e in resolution.entries
        ],
        "refused": [
            {
                "kind": r.kind,
                "route": r.pattern,
                "service": r.service,
                "reason": r.reason,
                "detail": r.detail,
            }
            for r in resolution.refusals
        ],
    }


def _print(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
