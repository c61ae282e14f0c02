"""Route claims: how a consumer instance tells gateways which routes it serves.

A claim is a small JSON document published on core NATS (no JetStream needed):

- ``narun.routes.claim.<service>``: an instance announces (``"up"``) the HTTP routes and gRPC
  services it serves, at start, every :data:`ANNOUNCE_INTERVAL` seconds, and whenever a
  gateway asks; it withdraws (``"down"``) them when it stops. A gateway forgets an instance
  whose announcements stop for ``ttl`` seconds (a crash, a lost network).
- ``narun.routes.query``: a gateway (or ``narun routes ls``) that starts publishes here, and
  every instance announces at once, so a new gateway learns the table within a round trip.

The service name is the last subject token, so NATS permissions can bind a user to the
claims of its own service (``narun.routes.claim.shop``) and no further. Readers must check
that the document's ``service`` equals that token (:func:`decode_claim` does).
The normative description is ``docs/routing.md``; this module is pure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

from narun.errors import NarunError

__all__ = [
    "ANNOUNCE_INTERVAL",
    "CLAIM_PREFIX",
    "CLAIM_WILDCARD",
    "DEFAULT_METHODS",
    "DEFAULT_TTL",
    "QUERY_SUBJECT",
    "Claim",
    "ClaimError",
    "HTTPClaim",
    "claim_subject",
    "decode_claim",
    "encode_claim",
    "parse_methods",
    "parse_route",
]

CLAIM_PREFIX: Final = "narun.routes.claim."
CLAIM_WILDCARD: Final = "narun.routes.claim.*"
QUERY_SUBJECT: Final = "narun.routes.query"
ANNOUNCE_INTERVAL: Final = 1.0
"""Seconds between an instance's announcements."""
DEFAULT_METHODS: Final = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a route claims when none are given."""
DEFAULT_TTL: Final = 3.5
"""Seconds a gateway keeps a claim after the instance's last announcement."""

_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")
_SERVICE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_GRPC = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAX_ROUTES = 64
_MAX_DOCUMENT = 32 * 1024


class ClaimError(NarunError):
    """A claim document (or a declared route) that is not well formed."""


@dataclass(frozen=True, slots=True)
class HTTPClaim:
    """One HTTP route a service declares: a path (``/shop/`` = subtree) and its methods."""

    path: str
    methods: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_path(self.path)
        if not self.methods:
            raise ClaimError(f"route {self.path!r}: at least one method is required")
        for method in self.methods:
            if not _METHOD.fullmatch(method):
                raise ClaimError(f"route {self.path!r}: bad method {method!r}")
        if len(set(self.methods)) != len(self.methods):
            raise ClaimError(f"route {self.path!r}: a method is listed twice")


@dataclass(frozen=True, slots=True)
class Claim:
    """What one instance of a service serves, as it announced it."""

    service: str
    instance: str
    """The instance's Micro service id (unique per run)."""
    http: tuple[HTTPClaim, ...] = ()
    grpc: tuple[str, ...] = ()
    """Fully-qualified gRPC service names (``shop.v1.Cart``)."""
    since: float = 0.0
    """Unix time the instance started: the oldest live claim on a route holds it."""
    ttl: float = DEFAULT_TTL
    up: bool = True
    """``False``: the instance withdraws every route (it is stopping)."""

    def __post_init__(self) -> None:
        if not _SERVICE.fullmatch(self.service):
            raise ClaimError(f"bad service name {self.service!r}")
        if not self.instance or len(self.instance) > 128:
            raise ClaimError("bad instance id")
        if len(self.http) + len(self.grpc) > _MAX_ROUTES:
            raise ClaimError(f"more than {_MAX_ROUTES} routes in one claim")
        for name in self.grpc:
            if not _GRPC.fullmatch(name):
                raise ClaimError(f"bad gRPC service name {name!r}")
        if not 0 < self.ttl <= 300:
            raise ClaimError(f"ttl must be in (0, 300] seconds (got {self.ttl!r})")


def parse_methods(text: str) -> tuple[str, ...]:
    """``"get, POST"`` -> ``("GET", "POST")``; raises :class:`ClaimError` if empty or bad."""
    methods = tuple(m.strip().upper() for m in text.split(",") if m.strip())
    if not methods:
        raise ClaimError("at least one method is required")
    for method in methods:
        if not _METHOD.fullmatch(method):
            raise ClaimError(f"bad method {method!r}")
    return tuple(dict.fromkeys(methods))


def parse_route(text: str, methods: tuple[str, ...] = DEFAULT_METHODS) -> HTTPClaim:
    """``"/shop/"`` (with ``methods``) or ``"GET,POST /shop/"`` -> an :class:`HTTPClaim`."""
    text = text.strip()
    if " " in text:
        verbs, path = text.split(" ", 1)
        return HTTPClaim(path.strip(), parse_methods(verbs))
    return HTTPClaim(text, methods)


def claim_subject(service: str) -> str:
    """The subject ``service``'s instances announce on."""
    return CLAIM_PREFIX + service


def encode_claim(claim: Claim) -> bytes:
    """The claim as the JSON document of ``docs/routing.md``."""
    doc: dict[str, object] = {
        "service": claim.service,
        "instance": claim.instance,
        "state": "up" if claim.up else "down",
        "since": claim.since,
        "ttl": claim.ttl,
        "http": [{"path": r.path, "methods": list(r.methods)} for r in claim.http],
        "grpc": list(claim.grpc),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_claim(subject: str, data: bytes) -> Claim:
    """Parse a claim received on ``subject``; the service must be the subject's last token."""
    if not subject.startswith(CLAIM_PREFIX):
        raise ClaimError(f"not a claim subject: {subject!r}")
    if len(data) > _MAX_DOCUMENT:
        raise ClaimError(f"claim over {_MAX_DOCUMENT} bytes")
    try:
        doc = json.loads(data)
    except ValueError:
        raise ClaimError("claim is not JSON") from None
    if not isinstance(doc, dict):
        raise ClaimError("claim is not a JSON object")
    service = doc.get("service")
    if service != subject[len(CLAIM_PREFIX) :]:
        raise ClaimError(f"claim for service {service!r} published on {subject!r}")
    state = doc.get("state", "up")
    if state not in ("up", "down"):
        raise ClaimError(f"bad state {state!r}")
    http = doc.get("http", [])
    grpc = doc.get("grpc", [])
    if not isinstance(http, list) or not isinstance(grpc, list):
        raise ClaimError("http and grpc must be lists")
    routes = []
    for item in http:
        if not isinstance(item, dict):
            raise ClaimError("an http route is not an object")
        path, methods = item.get("path"), item.get("methods")
        if not isinstance(path, str) or not isinstance(methods, list):
            raise ClaimError("an http route needs a path and a list of methods")
        if not all(isinstance(m, str) for m in methods):
            raise ClaimError("methods must be strings")
        routes.append(HTTPClaim(path, tuple(methods)))
    if not all(isinstance(g, str) for g in grpc):
        raise ClaimError("gRPC service names must be strings")
    since, ttl, instance = doc.get("since", 0.0), doc.get("ttl", DEFAULT_TTL), doc.get("instance")
    if not isinstance(since, int | float) or not isinstance(ttl, int | float):
        raise ClaimError("since and ttl must be numbers")
    if not isinstance(instance, str):
        raise ClaimError("instance must be a string")
    return Claim(
        service=service,
        instance=instance,
        http=tuple(routes),
        grpc=tuple(grpc),
        since=float(since),
        ttl=float(ttl),
        up=state == "up",
    )


def _check_path(path: str) -> None:
    if not path.startswith("/") or len(path) > 1024:
        raise ClaimError(f"route path must start with '/' (got {path!r})")
    if any(c in path for c in "?#") or not path.isprintable() or " " in path:
        raise ClaimError(f"route path {path!r}: no query, fragment, spaces or controls")
    if "//" in path or "/../" in path or path.endswith("/..") or "/./" in path:
        raise ClaimError(f"route path {path!r} is not normalized")
