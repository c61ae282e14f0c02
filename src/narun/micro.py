"""The NATS Micro (ADR-32) service protocol, as pure data: subjects and JSON documents.

narun's consumer answers ``$SRV.PING|INFO|STATS`` itself (see ``narun.consumer.service``)
so that it controls concurrency, draining and statistics. This module holds the parts
that need no connection: the monitoring subjects and the response documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["EndpointStats", "ServiceIdentity", "control_subjects", "format_time"]

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


@dataclass(slots=True)
class EndpointStats:
    """Counters of one endpoint, in the units ADR-32 uses (nanoseconds)."""

    name: str
    """Endpoint name (``handler`` or ``grpc_handler``)."""
    subject: str
    """Subject the endpoint listens on (the service name)."""
    queue_group: str
    """Queue group shared by all instances (``q``)."""
    num_requests: int = 0
    """Requests answered, errors included."""
    num_errors: int = 0
    """Requests answered with an error."""
    processing_time: int = 0
    """Total handler time in nanoseconds."""
    last_error: str = ""
    """Description of the most recent error."""

    def record(self, elapsed_ns: int, error: str | None) -> None:
        """Count one answered request."""
        self.num_requests += 1
        self.processing_time += elapsed_ns
        if error is not None:
            self.num_errors += 1
            self.last_error = error

    def as_stats(self) -> dict[str, Any]:
        """The endpoint entry of a STATS response."""
        average = self.processing_time // self.num_requests if self.num_requests else 0
        return {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "num_requests": self.num_requests,
            "num_errors": self.num_errors,
            "last_error": self.last_error,
            "processing_time": self.processing_time,
            "average_processing_time": average,
        }

    def as_info(self) -> dict[str, Any]:
        """The endpoint entry of an INFO response."""
        return {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "metadata": None,
        }


@dataclass(slots=True)
class ServiceIdentity:
    """What identifies one running service instance."""

    name: str
    """Service name (ADR-32: ``^[A-Za-z0-9_-]+$``)."""
    id: str
    """Unique id of this instance."""
    version: str
    """SemVer version string."""
    description: str = ""
    """Free text shown by ``nats micro info``."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Free key/value pairs shown by ``nats micro info``."""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the instance started, UTC."""

    def _base(self, kind: str) -> dict[str, Any]:
        return {
            "type": kind,
            "name": self.name,
            "id": self.id,
            "version": self.version,
            "metadata": dict(self.metadata),
        }

    def ping(self) -> dict[str, Any]:
        """A PING response document."""
        return self._base(PING_TYPE)

    def info(self, endpoints: list[EndpointStats]) -> dict[str, Any]:
        """An INFO response document."""
        doc = self._base(INFO_TYPE)
        doc["description"] = self.description
        doc["endpoints"] = [e.as_info() for e in endpoints]
        return doc

    def stats(self, endpoints: list[EndpointStats]) -> dict[str, Any]:
        """A STATS response document."""
        doc = self._base(STATS_TYPE)
        doc["started"] = format_time(self.started)
        doc["endpoints"] = [e.as_stats() for e in endpoints]
        return doc
