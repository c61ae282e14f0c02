"""The narun error hierarchy.

Every error narun raises on purpose derives from :class:`NarunError`. Each kind knows
the HTTP status and the gRPC status code to answer an outside client with, and a
public message that is safe to show them. Internal detail (the ``str`` of the
exception) goes to logs only; boundaries translate errors in exactly one place.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BackendError",
    "BadBackendReply",
    "BadRequest",
    "BinaryHTTPError",
    "BodyTimeout",
    "ConfigError",
    "HeadersTooLarge",
    "NarunError",
    "NoResponders",
    "NotConnected",
    "PayloadTooLarge",
    "RequestTimeout",
    "URITooLong",
]


class NarunError(Exception):
    """Base class of every error narun raises on purpose."""

    http_status: ClassVar[int] = 500
    """HTTP status an outside client is answered with."""
    grpc_code: ClassVar[str] = "INTERNAL"
    """Name of the ``grpc.StatusCode`` an outside client is answered with."""
    public_message: ClassVar[str] = "Internal server error"
    """Text that is safe to send to an outside client."""


class ConfigError(NarunError):
    """A configuration file or option is invalid. The message names the key path."""


class BinaryHTTPError(NarunError, ValueError):
    """Bytes that are not a well-formed RFC 9292 Binary HTTP message.

    The only exception the codec's decoders raise on bad input.
    """

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    public_message = "Malformed Binary HTTP message"


class BodyTimeout(NarunError):
    """The client did not send the whole request body within the route's timeout."""

    http_status = 408
    grpc_code = "DEADLINE_EXCEEDED"
    public_message = "Request body not received in time"


class RequestTimeout(NarunError):
    """No reply arrived from the backend service within the request timeout."""

    http_status = 504
    grpc_code = "DEADLINE_EXCEEDED"
    public_message = "Request timed out waiting for backend service"


class NoResponders(NarunError):
    """No consumer is subscribed to the service subject."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    public_message = "No backend service available"


class NotConnected(NarunError):
    """The gateway is not connected to NATS right now."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    public_message = "Gateway is not connected to NATS"


class PayloadTooLarge(NarunError):
    """The encoded request does not fit in the NATS server's ``max_payload``."""

    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"
    public_message = "Request too large"


class HeadersTooLarge(NarunError):
    """The request's header fields are larger than the gateway accepts."""

    http_status = 431
    grpc_code = "RESOURCE_EXHAUSTED"
    public_message = "Request header fields too large"


class BadBackendReply(NarunError):
    """The backend replied with something that cannot be decoded."""

    http_status = 502
    grpc_code = "INTERNAL"
    public_message = "Bad reply from backend service"


class BackendError(NarunError):
    """The backend replied with an ADR-32 service error (``Nats-Service-Error``)."""

    http_status = 502
    grpc_code = "INTERNAL"
    public_message = "Backend service error"

    def __init__(self, description: str, code: str) -> None:
        super().__init__(f"service error {code}: {description}")
        self.description = description
        self.code = code


class URITooLong(NarunError):
    """The request target (path and query) is longer than a backend peer accepts."""

    http_status = 414
    grpc_code = "INVALID_ARGUMENT"
    public_message = "URI too long"


class BadRequest(NarunError):
    """The request is one no backend peer would accept (e.g. an invalid ``Host``)."""

    http_status = 400
    grpc_code = "INVALID_ARGUMENT"
    public_message = "Bad request"
