"""The NATS Micro (ADR-32) service protocol, as pure data: subjects and JSON documents.

narun's consumer answers ``$SRV.PING|INFO|STATS`` itself (see ``narun.consumer.service``)
so that it controls concurrency, draining and statistics. This module holds the parts
that need no connection: the monitoring subjects and one frozen type per ADR-32 document
(:class:`PingResponse`, :class:`InfoResponse` with its :class:`EndpointInfo` entries,
:class:`StatsResponse` with its :class:`EndpointStats` entries). The consumer's service
builds them and sends ``as_dict()``; ``narun services`` reads what any ADR-32 service
sends back with :func:`parse_ping`, :func:`parse_info` and :func:`parse_stats`.

The parsers accept what the Go, Python and other client libraries really emit: Go's
``started`` is RFC 3339 with up to nine fraction digits, nats-py's has three and may lack
a zone; ``metadata`` may be ``null``; endpoints may carry ``data``; durations are integer
nanoseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from narun.errors import NarunError

__all__ = [
    "EndpointInfo",
    "EndpointStats",
    "InfoResponse",
    "MicroDocumentError",
    "PingResponse",
    "StatsResponse",
    "control_subjects",
    "format_duration",
    "format_time",
    "parse_info",
    "parse_ping",
    "parse_stats",
    "parse_time",
]

PING_TYPE = "io.nats.micro.v1.ping_response"
INFO_TYPE = "io.nats.micro.v1.info_response"
STATS_TYPE = "io.nats.micro.v1.stats_response"
VERBS = ("PING", "INFO", "STATS")


def control_subjects(name: str, service_id: str) -> list[tuple[str, str]]:
    """Every ``(verb, subject)`` a service named ``name`` answers on."""
    subjects: list[tuple[str, str]] = []
    for verb in VERBS:
        subjects.append((verb, f"$SRV.{verb}"))
        subjects.append((verb, f"$SRV.{verb}.{name}"))
        subjects.append((verb, f"$SRV.{verb}.{name}.{service_id}"))
    return subjects


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with nanosecond-style fraction, as Go's micro prints ``started``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


# --- The documents ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingResponse:
    """The ``$SRV.PING`` document: who one instance is."""

    name: str
    """Service name (ADR-32: ``^[A-Za-z0-9_-]+$``)."""
    id: str
    """Unique id of the instance."""
    version: str
    """SemVer version string (may be empty if a service did not say)."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Free key/value pairs (``null`` in a document we read becomes empty)."""

    def as_dict(self) -> dict[str, Any]:
        """The ADR-32 document."""
        return {
            "type": PING_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One endpoint entry of an INFO document."""

    name: str
    """Endpoint name (narun's: ``handler`` or ``grpc_handler``)."""
    subject: str
    """Subject the endpoint listens on (narun's: the service name)."""
    queue_group: str = ""
    """Queue group (narun's: ``q``); empty when the endpoint does not use one."""
    metadata: dict[str, str] | None = None
    """Endpoint metadata; ``None`` is written as ``null``, as Go writes a nil map (a
    ``null`` we read becomes empty)."""

    def as_dict(self) -> dict[str, Any]:
        """The ADR-32 entry."""
        return {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "metadata": None if self.metadata is None else dict(self.metadata),
        }


@dataclass(frozen=True, slots=True)
class InfoResponse:
    """The ``$SRV.INFO`` document: an instance and its endpoints."""

    name: str
    """Service name."""
    id: str
    """Instance id."""
    version: str
    """Service version."""
    description: str = ""
    """Free text shown by ``nats micro info``."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Service metadata."""
    endpoints: tuple[EndpointInfo, ...] = ()
    """The instance's endpoints."""

    def as_dict(self) -> dict[str, Any]:
        """The ADR-32 document."""
        return {
            "type": INFO_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": dict(self.metadata),
            "description": self.description,
            "endpoints": [e.as_dict() for e in self.endpoints],
        }


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One endpoint entry of a STATS document. Times are nanoseconds."""

    name: str
    """Endpoint name."""
    subject: str
    """Subject the endpoint listens on."""
    queue_group: str = ""
    """Queue group; empty when the endpoint does not use one."""
    num_requests: int = 0
    """Requests answered, errors included."""
    num_errors: int = 0
    """Requests answered with an error."""
    last_error: str = ""
    """Description of the most recent error."""
    processing_time: int = 0
    """Total handler time, nanoseconds."""
    average_processing_time: int = 0
    """``processing_time // num_requests`` (0 without requests), nanoseconds."""
    data: Any = None
    """Whatever a service's stats handler added (any JSON value), or ``None``."""

    def as_dict(self) -> dict[str, Any]:
        """The ADR-32 entry (``data`` only when present)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "num_requests": self.num_requests,
            "num_errors": self.num_errors,
            "last_error": self.last_error,
            "processing_time": self.processing_time,
            "average_processing_time": self.average_processing_time,
        }
        if self.data is not None:
            entry["data"] = self.data
        return entry


@dataclass(frozen=True, slots=True)
class StatsResponse:
    """The ``$SRV.STATS`` document: an instance's counters per endpoint."""

    name: str
    """Service name."""
    id: str
    """Instance id."""
    version: str
    """Service version."""
    started: datetime | None = None
    """When the instance started (UTC); ``None`` if a service did not say."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Service metadata."""
    endpoints: tuple[EndpointStats, ...] = ()
    """Per-endpoint counters."""

    def as_dict(self) -> dict[str, Any]:
        """The ADR-32 document (``started`` in UTC with nanosecond-style fraction)."""
        return {
            "type": STATS_TYPE,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": dict(self.metadata),
            "started": format_time(self.started) if self.started else None,
            "endpoints": [e.as_dict() for e in self.endpoints],
        }


# --- Reading what services answer --------------------------------------------------


class MicroDocumentError(NarunError, ValueError):
    """A monitoring reply that is not an ADR-32 document of the expected kind."""

    http_status = 502
    public_message = "Malformed service monitoring reply"


Document = Mapping[str, Any] | bytes | bytearray | str
"""A response document: raw JSON (as received) or already decoded."""


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime.

    Accepts ``Z`` or an offset, and zero to nine fraction digits (precision beyond
    microseconds is dropped). A timestamp without a zone is taken to be UTC.
    """
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise MicroDocumentError(f"started: not an RFC 3339 time: {value!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _load(doc: Document, kind: str) -> Mapping[str, Any]:
    value: object = doc
    if isinstance(doc, bytes | bytearray | str):
        try:
            value = json.loads(doc)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            raise MicroDocumentError(f"not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise MicroDocumentError(f"expected a JSON object, got {type(value).__name__}")
    declared = value.get("type")
    if declared is not None and (not isinstance(declared, str) or not declared.endswith(kind)):
        raise MicroDocumentError(f"expected a {kind} document, got type {declared!r}")
    return value


def _text(doc: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise MicroDocumentError(f"{key}: missing")
        return ""
    if not isinstance(value, str):
        raise MicroDocumentError(f"{key}: expected a string, got {value!r}")
    return value


def _metadata(doc: Mapping[str, Any], key: str = "metadata") -> dict[str, str]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MicroDocumentError(f"{key}: expected an object, got {value!r}")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _integer(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if value is None:
        return 0
    if isinstance(value, bool):
        raise MicroDocumentError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return round(value)
    if isinstance(value, str):
        try:
            return round(float(value))
        except ValueError:
            pass
    raise MicroDocumentError(f"{key}: expected a number, got {value!r}")


def _entries(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise MicroDocumentError(f"{key}: expected a list of objects, got {value!r}")
    return value


def parse_ping(doc: Document) -> PingResponse:
    """Parse a PING response; raise :class:`MicroDocumentError` if it is not one."""
    d = _load(doc, "ping_response")
    return PingResponse(
        name=_text(d, "name", required=True),
        id=_text(d, "id", required=True),
        version=_text(d, "version"),
        metadata=_metadata(d),
    )


def parse_info(doc: Document) -> InfoResponse:
    """Parse an INFO response; raise :class:`MicroDocumentError` if it is not one."""
    d = _load(doc, "info_response")
    endpoints = tuple(
        EndpointInfo(
            name=_text(e, "name"),
            subject=_text(e, "subject"),
            queue_group=_text(e, "queue_group"),
            metadata=_metadata(e),
        )
        for e in _entries(d, "endpoints")
    )
    return InfoResponse(
        name=_text(d, "name", required=True),
        id=_text(d, "id", required=True),
        version=_text(d, "version"),
        description=_text(d, "description"),
        metadata=_metadata(d),
        endpoints=endpoints,
    )


def _endpoint_stats(e: Mapping[str, Any]) -> EndpointStats:
    requests = _integer(e, "num_requests")
    total = _integer(e, "processing_time")
    if e.get("average_processing_time") is None:
        average = total // requests if requests > 0 else 0
    else:
        average = _integer(e, "average_processing_time")
    return EndpointStats(
        name=_text(e, "name"),
        subject=_text(e, "subject"),
        queue_group=_text(e, "queue_group"),
        num_requests=requests,
        num_errors=_integer(e, "num_errors"),
        last_error=_text(e, "last_error"),
        processing_time=total,
        average_processing_time=average,
        data=e.get("data"),
    )


def parse_stats(doc: Document) -> StatsResponse:
    """Parse a STATS response; raise :class:`MicroDocumentError` if it is not one."""
    d = _load(doc, "stats_response")
    started = _text(d, "started")
    return StatsResponse(
        name=_text(d, "name", required=True),
        id=_text(d, "id", required=True),
        version=_text(d, "version"),
        started=parse_time(started) if started else None,
        metadata=_metadata(d),
        endpoints=tuple(_endpoint_stats(e) for e in _entries(d, "endpoints")),
    )


# --- Durations for people ---------------------------------------------------------


_SMALL_UNITS = (("ns", 1), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000))


def _short(value: float) -> str:
    text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
    return text.removesuffix(".0")


def format_duration(nanos: float) -> str:
    """A duration in nanoseconds for people: ``10µs``, ``2.5ms``, ``244ms``, ``1m5s``.

    Three significant figures at most; one decimal below ten units, none above.
    """
    if nanos < 0:
        return "-" + format_duration(-nanos)
    if nanos == 0:
        return "0s"
    index = 0
    while index + 1 < len(_SMALL_UNITS) and nanos >= _SMALL_UNITS[index + 1][1]:
        index += 1
    unit, size = _SMALL_UNITS[index]
    text = _short(nanos / size)
    if float(text) < (60 if unit == "s" else 1000):
        return text + unit
    if unit != "s":  # rounding reached the next unit: 999.96µs is 1ms
        unit, size = _SMALL_UNITS[index + 1]
        return _short(nanos / size) + unit
    hours, rest = divmod(round(nanos / 1_000_000_000), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes}m{seconds}s" if hours else f"{minutes}m{seconds}s"
