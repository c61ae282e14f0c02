"""The effective route table: static routes plus the claims services announce. Pure.

A :class:`RouteTable` holds the live claims (one per instance, each with an expiry) and
decides, with :meth:`RouteTable.resolve`, which claimed routes take effect under the
gateway's ``dynamic_routes`` rules. The decision is deterministic, so every gateway (and
``narun routes ls``) that sees the same claims agrees:

1. Static routes always win: a claim on a path (any method) or a gRPC service that the
   config routes is refused.
2. A claim outside every rule (path not under an allowed prefix, gRPC service not in an
   allowed package, or a service the rule does not name) is refused.
3. A path (or gRPC service) belongs to one service. Among the services that claim it, the
   one whose oldest live instance started first holds it (ties: the smaller name); the
   others are refused until it is gone.
4. A service keeps a route while any of its instances announces it; an instance that
   withdraws or stops announcing for its ``ttl`` is dropped.

No I/O, no clock: callers pass ``now`` (monotonic seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from narun.config.gateway import GatewayConfig, GRPCRoute, HTTPRoute
from narun.protocol.claims import Claim

__all__ = ["REASONS", "Refusal", "Resolution", "RouteEntry", "RouteTable"]

Reason = Literal["outside_rules", "service_not_allowed", "static_route", "held_by_other"]
REASONS: Final[tuple[Reason, ...]] = (
    "outside_rules",
    "service_not_allowed",
    "static_route",
    "held_by_other",
)
"""Why a claim is refused (the ``reason`` label of the refusal metric)."""


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One line of the effective table."""

    kind: Literal["http", "grpc"]
    pattern: str
    """The path pattern, or the fully-qualified gRPC service name."""
    methods: tuple[str, ...]
    """HTTP methods (empty for gRPC)."""
    service: str
    source: Literal["static", "claim"]
    instances: int = 0
    """Live instances announcing it (claims only)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A claimed route that does not take effect, and why."""

    service: str
    kind: Literal["http", "grpc"]
    pattern: str
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Resolution:
    """What :meth:`RouteTable.resolve` decided."""

    http: tuple[HTTPRoute, ...]
    """The claimed HTTP routes that take effect (add them to the static ones)."""
    grpc: tuple[GRPCRoute, ...]
    """The claimed gRPC routes that take effect."""
    entries: tuple[RouteEntry, ...]
    """Static then claimed routes, for display."""
    refusals: tuple[Refusal, ...]


@dataclass(slots=True)
class _Live:
    claim: Claim
    expires: float


class RouteTable:
    """Live claims and the config's rules; see the module doc for the decision."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._static_paths = {r.path for r in config.http_routes}
        self._static_grpc = {r.grpc for r in config.grpc_routes}
        self._live: dict[tuple[str, str], _Live] = {}

    def __len__(self) -> int:
        return len(self._live)

    def announce(self, claim: Claim, now: float) -> bool:
        """Record an announcement (or a withdrawal); True if the claims changed."""
        key = (claim.service, claim.instance)
        if not claim.up:
            return self._live.pop(key, None) is not None
        live = self._live.get(key)
        if live is not None and live.claim == claim:
            live.expires = now + claim.ttl
            return False
        self._live[key] = _Live(claim, now + claim.ttl)
        return True

    def expire(self, now: float) -> bool:
        """Drop the instances not heard from for their ttl; True if any was dropped."""
        gone = [key for key, live in self._live.items() if live.expires <= now]
        for key in gone:
            del self._live[key]
        return bool(gone)

    def resolve(self) -> Resolution:
        """The effective table for the live claims (deterministic, see the module doc)."""
        by_service: dict[str, list[Claim]] = {}
        for live in self._live.values():
            by_service.setdefault(live.claim.service, []).append(live.claim)
        order = sorted(by_service, key=lambda s: (min(c.since for c in by_service[s]), s))
        held_paths: dict[str, str] = {}
        held_grpc: dict[str, str] = {}
        http: list[HTTPRoute] = []
        grpc: list[GRPCRoute] = []
        entries: list[RouteEntry] = [self._static_entry(r) for r in self._config.routes]
        refusals: list[Refusal] = []
        for service in order:
            claims = by_service[service]
            methods: dict[str, dict[str, int]] = {}
            for claim in claims:
                for route in claim.http:
                    counts = methods.setdefault(route.path, {})
                    for method in route.methods:
                        counts[method] = counts.get(method, 0) + 1
            for path, counts in methods.items():
                refusal = self._check("http", service, path, held_paths)
                if refusal is not None:
                    refusals.append(refusal)
                    continue
                held_paths[path] = service
                ms = tuple(sorted(counts))
                http.append(HTTPRoute(path=path, methods=ms, service=service))
                n = sum(1 for c in claims if any(r.path == path for r in c.http))
                entries.append(RouteEntry("http", path, ms, service, "claim", n))
            for name in sorted({g for c in claims for g in c.grpc}):
                refusal = self._check("grpc", service, name, held_grpc)
                if refusal is not None:
                    refusals.append(refusal)
                    continue
                held_grpc[name] = service
                grpc.append(GRPCRoute(grpc=name, service=service))
                n = sum(1 for c in claims if name in c.grpc)
                entries.append(RouteEntry("grpc", name, (), service, "claim", n))
        return Resolution(tuple(http), tuple(grpc), tuple(entries), tuple(refusals))

    def _check(
        self, kind: Literal["http", "grpc"], service: str, pattern: str, held: dict[str, str]
    ) -> Refusal | None:
        static = self._static_paths if kind == "http" else self._static_grpc
        if pattern in static:
            return Refusal(service, kind, pattern, "static_route", "a static route has it")
        rules = [
            rule
            for rule in self._config.dynamic_routes
            if (kind == "http" and rule.path_prefix and pattern.startswith(rule.path_prefix))
            or (
                kind == "grpc"
                and rule.grpc_package
                and (pattern == rule.grpc_package or pattern.startswith(rule.grpc_package + "."))
            )
        ]
        if not rules:
            what = "prefix" if kind == "http" else "gRPC package"
            return Refusal(service, kind, pattern, "outside_rules", f"no dynamic_routes {what}")
        if not any(not rule.services or service in rule.services for rule in rules):
            detail = "the dynamic_routes rule names other services"
            return Refusal(service, kind, pattern, "service_not_allowed", detail)
        holder = held.get(pattern)
        if holder is not None:
            return Refusal(service, kind, pattern, "held_by_other", f"held by {holder!r}")
        return None

    @staticmethod
    def _static_entry(route: HTTPRoute | GRPCRoute) -> RouteEntry:
        if isinstance(route, HTTPRoute):
            return RouteEntry("http", route.path, route.methods, route.service, "static")
        return RouteEntry("grpc", route.grpc, (), route.service, "static")
