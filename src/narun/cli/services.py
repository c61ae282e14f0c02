"""``narun services``: list, inspect, measure and ping NATS Micro (ADR-32) services.

Works with any ADR-32 service, Go or Python, narun or not. Each command publishes one
``$SRV.<VERB>[.<name>]`` request with a reply inbox and collects every answer that
arrives before ``--timeout`` (scatter-gather); the documents are parsed by
:mod:`narun.protocol.micro` and printed as plain aligned columns, or as JSON with ``--json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from nats.aio.client import Client
from nats.aio.msg import Msg

from narun.config.addr import validate_service_name
from narun.errors import ConfigError, NotConnected
from narun.protocol.micro import (
    InfoResponse,
    MicroDocumentError,
    PingResponse,
    StatsResponse,
    format_duration,
    parse_info,
    parse_ping,
    parse_stats,
)

__all__ = ["services"]

T = TypeVar("T", InfoResponse, PingResponse, StatsResponse)

_STATUS = "Status"
_NO_RESPONDERS = "503"


# --- talking to NATS -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reply:
    data: bytes
    rtt: float
    """Seconds from sending the request to receiving this reply."""


async def _connect(url: str, timeout: float) -> Client:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        # nats-py's default callback logs each failure with a traceback; keep the last
        # one instead, to name the real cause rather than "no servers available".
        errors.append(exc)

    nc = Client()
    try:
        await nc.connect(
            servers=[u.strip() for u in url.split(",")],
            name="narun services",
            allow_reconnect=False,
            # nats-py retries the first connection max_reconnect_attempts times per
            # server, waiting in between (two minutes by default); fail fast instead.
            max_reconnect_attempts=1,
            reconnect_time_wait=0,
            connect_timeout=max(2, math.ceil(timeout)),
            error_cb=remember,
        )
    except Exception as exc:
        cause = errors[-1] if errors else exc
        if isinstance(cause, TimeoutError):
            reason = "connection timed out"
        else:
            reason = str(cause) or type(cause).__name__
        raise NotConnected(f"cannot connect to NATS at {url}: {reason}") from None
    return nc


async def _gather(url: str, subject: str, timeout: float) -> list[_Reply]:
    """Publish one request on ``subject`` and collect replies for ``timeout`` seconds.

    Returns early when the server says nobody is subscribed (its empty 503 status
    message), since then no reply can come.
    """
    nc = await _connect(url, timeout)
    try:
        replies: list[_Reply] = []
        nobody = asyncio.Event()
        sent = time.perf_counter()

        async def on_reply(msg: Msg) -> None:
            if not msg.data and (msg.headers or {}).get(_STATUS) == _NO_RESPONDERS:
                nobody.set()
                return
            replies.append(_Reply(msg.data, time.perf_counter() - sent))

        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=on_reply)
        sent = time.perf_counter()
        await nc.publish(subject, b"", reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(nobody.wait(), timeout)
        await sub.unsubscribe()
        return replies
    finally:
        await nc.close()


def _ask(url: str, timeout: float, verb: str, name: str | None) -> list[_Reply]:
    subject = f"$SRV.{verb}" if name is None else f"$SRV.{verb}.{name}"
    try:
        return asyncio.run(_gather(url, subject, timeout))
    except NotConnected as exc:
        raise click.ClickException(str(exc)) from None


def _parse_all(
    replies: Sequence[_Reply], parse: Callable[[bytes], T], name: str | None
) -> list[tuple[T, float]]:
    """Parsed replies sorted by (name, id), one per instance; malformed ones are reported."""
    found: dict[tuple[str, str], tuple[T, float]] = {}
    for reply in replies:
        try:
            doc = parse(reply.data)
        except MicroDocumentError as exc:
            click.echo(f"warning: ignored a malformed reply: {exc}", err=True)
            continue
        if name is None or doc.name == name:
            found.setdefault((doc.name, doc.id), (doc, reply.rtt))
    return [found[key] for key in sorted(found)]


def _collect(
    url: str, timeout: float, verb: str, parse: Callable[[bytes], T], name: str | None
) -> list[tuple[T, float]]:
    """Every instance's answer to ``verb`` with its round trip; an error if none answered."""
    found = _parse_all(_ask(url, timeout, verb, name), parse, name)
    if not found:
        who = "no services" if name is None else f"no service named {name!r}"
        raise click.ClickException(f"{who} answered within {timeout:g}s")
    return found


# --- plain-text output -----------------------------------------------------------------


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Collection[int] = (),
    footer: Sequence[str] | None = None,
    indent: str = "",
) -> list[str]:
    """Columns two spaces apart; columns in ``right`` aligned right (numbers).

    A ``footer`` row (totals) comes after a rule as wide as the widest line.
    """
    every = [header, *rows] if footer is None else [header, *rows, footer]
    widths = [max(len(row[i]) for row in every) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [line(row) for row in every]
    if footer is not None:
        lines.insert(-1, "-" * max(len(text) for text in lines))
    return [indent + text for text in lines]


def _metadata_text(metadata: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())) or "-"


def _emit(as_json: bool, value: Any, lines: Sequence[str]) -> None:
    """Print ``value`` as JSON with ``--json``, else the plain-text ``lines``."""
    if as_json:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))
        return
    for line in lines:
        click.echo(line)


def _ls_rows(infos: Sequence[InfoResponse]) -> list[dict[str, Any]]:
    """One row per service name: its versions, instance count and a description."""
    by_name: dict[str, list[InfoResponse]] = {}
    for info in infos:
        by_name.setdefault(info.name, []).append(info)
    rows = []
    for name in sorted(by_name):
        group = by_name[name]
        descriptions = [i.description for i in group if i.description]
        rows.append(
            {
                "name": name,
                "versions": sorted({i.version for i in group}),
                "instances": len({i.id for i in group}),
                "description": descriptions[0] if descriptions else "",
            }
        )
    return rows


def _started_text(stats: StatsResponse) -> str:
    return stats.started.strftime("%Y-%m-%d %H:%M:%S") if stats.started else "-"


def _stats_lines(stats: Sequence[StatsResponse]) -> list[str]:
    header = [
        "ID",
        "ENDPOINT",
        "REQUESTS",
        "ERRORS",
        "PROCESSING TIME",
        "AVERAGE TIME",
        "QUEUE GROUP",
        "STARTED (UTC)",
    ]
    rows: list[list[str]] = []
    requests = errors = processing = 0
    for s in stats:
        if not s.endpoints:
            rows.append([s.id, "-", "", "", "", "", "", _started_text(s)])
        for e in s.endpoints:
            rows.append(
                [
                    s.id,
                    e.name,
                    f"{e.num_requests:,}",
                    f"{e.num_errors:,}",
                    format_duration(e.processing_time),
                    format_duration(e.average_processing_time),
                    e.queue_group or "-",
                    _started_text(s),
                ]
            )
            requests += e.num_requests
            errors += e.num_errors
            processing += e.processing_time
    average = processing // requests if requests else 0
    totals = [
        "",
        "",
        f"{requests:,}",
        f"{errors:,}",
        format_duration(processing),
        format_duration(average),
        "",
        "",
    ]
    return _table(header, rows, right={2, 3, 4, 5}, footer=totals)


def _info_lines(infos: Sequence[InfoResponse]) -> list[str]:
    lines: list[str] = []
    for info in infos:
        if lines:
            lines.append("")
        lines.append(f"Instance {info.id}")
        lines.append(f"  Version:      {info.version or '-'}")
        lines.append(f"  Description:  {info.description or '-'}")
        lines.append(f"  Metadata:     {_metadata_text(info.metadata)}")
        if not info.endpoints:
            lines.append("  Endpoints:    -")
            continue
        lines.append("  Endpoints:")
        rows = [[e.name, e.subject, e.queue_group or "-"] for e in info.endpoints]
        lines += _table(["NAME", "SUBJECT", "QUEUE GROUP"], rows, indent="    ")
    return lines


# --- commands --------------------------------------------------------------------------


def _options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
        help="Seconds to collect replies for.",
    )(f)
    return click.option(
        "--nats-url",
        envvar="NARUN_NATS_URL",
        default="nats://localhost:4222",
        show_default=True,
        help="NATS server URL(s), comma-separated.",
    )(f)


def _service_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_service_name(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def services() -> None:
    """Inspect NATS Micro services (any ADR-32 implementation, Go or Python)."""


@services.command("ls")
@_options
def ls(nats_url: str, timeout: float, as_json: bool) -> None:
    """List services: name, versions, number of instances, description."""
    infos = [i for i, _ in _collect(nats_url, timeout, "INFO", parse_info, None)]
    rows = _ls_rows(infos)
    cells = [
        [r["name"], ", ".join(r["versions"]), str(r["instances"]), r["description"]] for r in rows
    ]
    _emit(as_json, rows, _table(["NAME", "VERSION", "INSTANCES", "DESCRIPTION"], cells, right={2}))


@services.command("info")
@click.argument("name", callback=_service_name)
@_options
def info(name: str, nats_url: str, timeout: float, as_json: bool) -> None:
    """Describe every instance of service NAME and its endpoints."""
    infos = [i for i, _ in _collect(nats_url, timeout, "INFO", parse_info, name)]
    count = len(infos)
    title = f"Service {name}: {count} instance{'s' if count != 1 else ''}"
    _emit(as_json, [i.as_dict() for i in infos], [title, "", *_info_lines(infos)])


@services.command("stats")
@click.argument("name", callback=_service_name)
@_options
def stats(name: str, nats_url: str, timeout: float, as_json: bool) -> None:
    """Request counts, errors and processing times of every instance of NAME."""
    found = [s for s, _ in _collect(nats_url, timeout, "STATS", parse_stats, name)]
    title = f"{name} service statistics"
    _emit(as_json, [s.as_dict() for s in found], [title, "", *_stats_lines(found)])


@services.command("ping")
@click.argument("name", required=False, callback=_service_name)
@_options
def ping(name: str | None, nats_url: str, timeout: float, as_json: bool) -> None:
    """Ping every instance (of NAME, or of all services) and show the round trip."""
    pongs = _collect(nats_url, timeout, "PING", parse_ping, name)
    value = [{**p.as_dict(), "rtt_ns": round(rtt * 1e9)} for p, rtt in pongs]
    rows = [[p.id, p.name, p.version, format_duration(rtt * 1e9)] for p, rtt in pongs]
    _emit(as_json, value, _table(["ID", "NAME", "VERSION", "RTT"], rows, right={3}))
