"""Gateway configuration: the YAML file of Go narun, parsed and validated in one place.

:func:`load_config` reads a file, :func:`parse_config` validates already-loaded data.
Both return an immutable :class:`GatewayConfig` or raise one :class:`ConfigError` whose
message has one line per problem, each ``<source>: <key path>: <problem> (got <value>)``::

    config.yaml: routes[1].methds: unknown key (did you mean 'methods'?)
    config.yaml: request_timeout_seconds: must be a number > 0 (got 'abc')

Checks that involve several keys (duplicate routes, ``grpc_addr`` required by gRPC
routes, two servers on one port) run once every single key is valid.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    SecretStr,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from narun.config import fields as f
from narun.config.addr import split_addr
from narun.config.files import read_yaml
from narun.errors import ConfigError
from narun.transport.auth import CONFIG_KEYS as _AUTH_KEYS
from narun.transport.auth import ENV_VARS as _AUTH_ENV
from narun.transport.auth import NATSAuth, auth_problems, redact_url

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "ENV_OVERRIDES",
    "NATS_URL_ENV",
    "ClaimRule",
    "GRPCRoute",
    "GatewayConfig",
    "HTTPRoute",
    "Route",
    "load_config",
    "parse_config",
]

NATS_URL_ENV = "NARUN_NATS_URL"
"""Environment variable that, when set and non-empty, overrides ``nats_url``."""

ENV_OVERRIDES: dict[str, str] = {
    "nats_url": NATS_URL_ENV,
    **{_AUTH_KEYS[name]: env for name, env in _AUTH_ENV.items()},
}
"""Config key -> environment variable that, when set and non-empty, replaces it."""
# Setting one of a pair from the environment drops the other one from the file.
_ENV_REPLACES = {
    "nats_password": "nats_password_file",
    "nats_password_file": "nats_password",
    "nats_token": "nats_token_file",
    "nats_token_file": "nats_token",
}
_SECRET_KEYS = frozenset({"nats_password", "nats_token"})
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
"""Default ``max_header_bytes``: 64 KiB of request header fields."""

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
_PROBLEMS = "narun_problems"
_ROUTE_KIND = "narun_route_kind"


# --- models --------------------------------------------------------------------------

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class HTTPRoute(BaseModel):
    """Send HTTP requests whose path and method match to a NATS Micro service."""

    model_config = _MODEL_CONFIG

    path: Annotated[str, BeforeValidator(f.path)]
    """Path to match. Ending in ``/`` matches the whole subtree (prefix), else exactly."""
    methods: Annotated[
        tuple[Annotated[str, BeforeValidator(f.method)], ...],
        BeforeValidator(f.method_list),
        AfterValidator(f.unique_methods),
    ]
    """HTTP methods this route accepts; trimmed and upper-cased. At least one."""
    service: Annotated[str, BeforeValidator(f.service)]
    """NATS Micro service name (ADR-32: letters, digits, ``_``, ``-``)."""
    timeout: Annotated[float | None, BeforeValidator(f.optional_seconds)] = None
    """Seconds to wait for the service's reply; overrides ``request_timeout_seconds``."""
    max_body_bytes: Annotated[int | None, BeforeValidator(f.optional_byte_count)] = None
    """Largest request body on this route (413 beyond); overrides ``max_body_bytes``."""
    stream_idle_timeout: Annotated[float | None, BeforeValidator(f.optional_seconds)] = None
    """Seconds a stream on this route may go without a frame from the service;
    overrides ``stream_idle_timeout_seconds``."""
    websocket: Annotated[bool, BeforeValidator(f.switch)] = False
    """Carry WebSocket openings on this route to the service (a GET; docs/websocket.md)."""

    @model_validator(mode="after")
    def _websocket_needs_get(self) -> HTTPRoute:
        if self.websocket and "GET" not in self.methods:
            raise ValueError("websocket: true needs GET in methods (the opening is a GET)")
        return self


class GRPCRoute(BaseModel):
    """Send every call of one gRPC service to a NATS Micro service."""

    model_config = _MODEL_CONFIG

    grpc: Annotated[str, BeforeValidator(f.grpc_name)]
    """Fully-qualified gRPC service name, e.g. ``hello.v1.Greeter``."""
    service: Annotated[str, BeforeValidator(f.service)]
    """NATS Micro service name (ADR-32: letters, digits, ``_``, ``-``)."""
    timeout: Annotated[float | None, BeforeValidator(f.optional_seconds)] = None
    """Seconds to wait for the service's reply; overrides ``request_timeout_seconds``."""


Route: TypeAlias = HTTPRoute | GRPCRoute
"""One configured route."""


class ClaimRule(BaseModel):
    """Where services may claim routes themselves (``docs/routing.md``).

    Exactly one of ``path_prefix`` and ``grpc_package``; ``services`` narrows who may.
    """

    model_config = _MODEL_CONFIG

    path_prefix: Annotated[str | None, BeforeValidator(f.path_prefix)] = None
    """HTTP routes at or below this prefix (ending in ``/``) may be claimed."""
    grpc_package: Annotated[str | None, BeforeValidator(f.grpc_package)] = None
    """gRPC services in this package (``shop.v1`` admits ``shop.v1.Cart``) may be claimed."""
    services: Annotated[
        tuple[Annotated[str, BeforeValidator(f.service)], ...], BeforeValidator(f.service_list)
    ] = ()
    """Only these NATS Micro services may claim here; empty: any service."""


_ROUTE_MODELS: dict[str, type[BaseModel]] = {"http": HTTPRoute, "grpc": GRPCRoute}


def _route_kind(value: Any) -> str | None:
    if isinstance(value, HTTPRoute | GRPCRoute):
        return "http" if isinstance(value, HTTPRoute) else "grpc"
    if isinstance(value, dict) and (("path" in value) != ("grpc" in value)):
        return "http" if "path" in value else "grpc"
    return None


_RouteField = Annotated[
    Annotated[HTTPRoute, Tag("http")] | Annotated[GRPCRoute, Tag("grpc")],
    Discriminator(_route_kind, custom_error_type=_ROUTE_KIND, custom_error_message="bad route"),
]


class GatewayConfig(BaseModel):
    """The whole gateway configuration. Build it with :func:`load_config`."""

    model_config = _MODEL_CONFIG

    nats_url: Annotated[str, BeforeValidator(f.nats_url)] = "nats://localhost:4222"
    """NATS server URL. The ``NARUN_NATS_URL`` environment variable overrides it."""
    server_addr: Annotated[str, f.address(optional=False)] = ":8080"
    """HTTP listen address, ``host:port``; ``:8080`` means all IPv4 interfaces."""
    grpc_addr: Annotated[str, f.address(optional=True)] = ""
    """gRPC listen address; ``""`` disables gRPC. Required when a gRPC route exists."""
    metrics_addr: Annotated[str, f.address(optional=True)] = ":9090"
    """Prometheus metrics listen address; ``""`` disables the metrics server."""
    request_timeout_seconds: Annotated[float, BeforeValidator(f.seconds)] = 30.0
    """Default seconds to wait for a service's reply (a route's ``timeout`` overrides)."""
    header_timeout_seconds: Annotated[float, BeforeValidator(f.seconds)] = 10.0
    """Seconds an HTTP client has to send a request's whole header section; the
    connection is closed after that (bounds slow, slowloris-style clients)."""
    retry_seconds: Annotated[float, BeforeValidator(f.non_negative_seconds)] = 0.5
    """How long to keep retrying a request that no consumer took (no responders, or an
    instance answered "overloaded" without running it); 0 disables. Never more than the
    request's timeout. Requests a consumer may have started are never retried."""
    wake_timeout_seconds: Annotated[float, BeforeValidator(f.non_negative_seconds)] = 10.0
    """How long a request that finds no instance is held while a node runner starts one
    (services deployed with ``max_replicas``, scaled to zero); 0 disables. Never more than the
    request's timeout; 503 with ``Retry-After`` when it passes."""
    routes: Annotated[tuple[_RouteField, ...], BeforeValidator(f.route_list)]
    """Static routes; each has either ``path`` (HTTP) or ``grpc`` (gRPC). At least one,
    unless ``dynamic_routes`` lets services claim theirs. Static routes always win."""
    dynamic_routes: Annotated[tuple[ClaimRule, ...], BeforeValidator(f.rule_list)] = ()
    """Where services may claim routes themselves (``narun serve --route``); empty: nowhere."""

    # --- edge safety (narun.protocol.forwarded, narun.gateway.edge) ---
    trusted_proxies: Annotated[
        tuple[Annotated[str, BeforeValidator(f.proxy)], ...], BeforeValidator(f.proxy_list)
    ] = ()
    """Peers (IP addresses or CIDR networks) whose ``X-Forwarded-*`` headers are believed."""
    max_body_bytes: Annotated[int | None, BeforeValidator(f.optional_byte_count)] = None
    """Largest request body accepted (413 beyond); default: no limit for services that
    stream (the body flows under flow control), ``max_payload`` for those that do not."""
    stream_idle_timeout_seconds: Annotated[float, BeforeValidator(f.seconds)] = 30.0
    """Seconds a streamed request or reply may go without any frame from the other side
    (heartbeats count) before it is aborted; a route's ``stream_idle_timeout`` overrides."""
    max_header_bytes: Annotated[int, BeforeValidator(f.byte_count)] = DEFAULT_MAX_HEADER_BYTES
    """Largest total size of the request header fields (431 beyond)."""
    go_peer_limits: Annotated[bool, BeforeValidator(f.switch)] = True
    """Refuse at the gateway the requests a Go narun consumer's decoder would refuse:
    ``:path`` over 4096 bytes (414), ``:authority`` over 256 bytes or not a valid host,
    method or scheme over 64 bytes (400). ``false`` when every consumer is narun's."""

    # --- NATS authentication and TLS (narun.transport.auth) ---
    nats_user: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """NATS user name; the password comes from ``nats_password_file`` (or ``nats_password``)."""
    nats_password: Annotated[SecretStr | None, BeforeValidator(f.optional_secret)] = None
    """NATS password itself; discouraged: use ``nats_password_file`` or NARUN_NATS_PASSWORD."""
    nats_password_file: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """File holding the NATS password."""
    nats_token: Annotated[SecretStr | None, BeforeValidator(f.optional_secret)] = None
    """NATS token itself; discouraged: use ``nats_token_file`` or NARUN_NATS_TOKEN."""
    nats_token_file: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """File holding the NATS authentication token."""
    nkey_seed_file: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """File holding a user NKey seed (``SU...``), as in Go narun."""
    nats_creds_file: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """NATS ``.creds`` file (user JWT and NKey seed)."""
    nats_tls_ca: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """PEM file of the CA that signs the NATS server certificate (default: system CAs)."""
    nats_tls_cert: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """PEM client certificate for NATS servers that verify clients (with ``nats_tls_key``)."""
    nats_tls_key: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """PEM private key of ``nats_tls_cert``."""
    nats_tls_hostname: Annotated[str | None, BeforeValidator(f.optional_text)] = None
    """Server name to verify in the NATS server certificate, if not the URL's host."""

    @property
    def nats_auth(self) -> NATSAuth | None:
        """How to authenticate to NATS (``None``: anonymous, no TLS options)."""
        auth = _auth_from(self)
        return auth if auth else None

    @property
    def http_routes(self) -> tuple[HTTPRoute, ...]:
        """The HTTP routes, in file order."""
        return tuple(r for r in self.routes if isinstance(r, HTTPRoute))

    @property
    def grpc_routes(self) -> tuple[GRPCRoute, ...]:
        """The gRPC routes, in file order."""
        return tuple(r for r in self.routes if isinstance(r, GRPCRoute))

    def route_timeout(self, route: Route) -> float:
        """Seconds to wait for a reply on ``route``: its ``timeout`` or the default."""
        return self.request_timeout_seconds if route.timeout is None else route.timeout

    def route_max_body(self, route: HTTPRoute) -> int | None:
        """Largest request body on ``route`` (None: no limit of the gateway's own)."""
        return self.max_body_bytes if route.max_body_bytes is None else route.max_body_bytes

    def route_stream_idle(self, route: HTTPRoute) -> float:
        """Stream idle timeout on ``route``: its ``stream_idle_timeout`` or the default."""
        if route.stream_idle_timeout is None:
            return self.stream_idle_timeout_seconds
        return route.stream_idle_timeout

    @model_validator(mode="after")
    def _check_across_keys(self) -> GatewayConfig:
        problems = _cross_key_problems(self)
        if problems:
            summary = "; ".join(f"{_key_path(loc)}: {msg}" for loc, msg in problems)
            raise PydanticCustomError(
                _PROBLEMS, "{summary}", {"summary": summary, "problems": problems}
            )
        return self


def _auth_values(cfg: GatewayConfig) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for name, key in _AUTH_KEYS.items():
        value = getattr(cfg, key)
        values[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return values


def _auth_from(cfg: GatewayConfig) -> NATSAuth:
    return NATSAuth(**_auth_values(cfg))


def _cross_key_problems(cfg: GatewayConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems that involve several keys; each is (key path, message)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    problems += [((_AUTH_KEYS[name],), msg) for name, msg in auth_problems(_auth_values(cfg))]
    if not cfg.routes and not cfg.dynamic_routes:
        problems.append((("routes",), "at least one route is required (got [])"))
    for i, rule in enumerate(cfg.dynamic_routes):
        if (rule.path_prefix is None) == (rule.grpc_package is None):
            msg = "needs exactly one of 'path_prefix' (HTTP) and 'grpc_package' (gRPC)"
            problems.append((("dynamic_routes", i), msg))
    if any(r.grpc_package for r in cfg.dynamic_routes) and not cfg.grpc_addr:
        problems.append((("grpc_addr",), "required because dynamic_routes has a grpc_package"))
    http_seen: dict[tuple[str, str], int] = {}
    grpc_seen: dict[str, int] = {}
    for i, route in enumerate(cfg.routes):
        if isinstance(route, HTTPRoute):
            for method in route.methods:
                first = http_seen.setdefault((route.path, method), i)
                if first != i:
                    msg = f"{method} {route.path!r} is already routed by routes[{first}]"
                    problems.append((("routes", i, "methods"), msg))
        else:
            first = grpc_seen.setdefault(route.grpc, i)
            if first != i:
                msg = f"{route.grpc!r} is already routed by routes[{first}]"
                problems.append((("routes", i, "grpc"), msg))
    if grpc_seen and not cfg.grpc_addr:
        msg = f"required because routes[{min(grpc_seen.values())}] is a gRPC route"
        problems.append((("grpc_addr",), msg))
    listeners = [
        (key, *split_addr(addr))
        for key, addr in (
            ("server_addr", cfg.server_addr),
            ("grpc_addr", cfg.grpc_addr),
            ("metrics_addr", cfg.metrics_addr),
        )
        if addr
    ]
    for j, (key, host, port) in enumerate(listeners):
        for other_key, other_host, other_port in listeners[:j]:
            same_host = host == other_host or bool({host, other_host} & _WILDCARD_HOSTS)
            if port and port == other_port and same_host:
                problems.append(((key,), f"port {port} is already used by {other_key}"))
    return problems


# --- turning pydantic errors into ConfigError lines ----------------------------------


class _Hidden:
    def __repr__(self) -> str:
        return "<hidden>"


_HIDDEN = _Hidden()


def _key_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _route_kind_problem(value: object) -> str:
    if not isinstance(value, dict):
        return f"must be a mapping with 'path' (HTTP) or 'grpc' (gRPC) (got {f.show(value)})"
    if "path" in value:
        return "has both 'path' and 'grpc'; a route is either HTTP or gRPC, not both"
    return "needs 'path' (HTTP route) or 'grpc' (gRPC route)"


def _error_lines(exc: ValidationError, source: str, env_keys: dict[str, str]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        model: type[BaseModel] = GatewayConfig
        kind = loc[2] if len(loc) > 2 and loc[0] == "routes" else None
        if isinstance(kind, str) and kind in _ROUTE_MODELS:
            model = _ROUTE_MODELS[kind]
            del loc[2]
        elif loc and loc[0] == "dynamic_routes":
            model = ClaimRule
        etype, value = err["type"], err.get("input")
        if etype == _PROBLEMS:
            ctx = err.get("ctx") or {}
            lines += [f"{source}: {_key_path(p)}: {m}" for p, m in ctx.get("problems", [])]
            continue
        key = _key_path(loc)
        if loc and loc[0] in _SECRET_KEYS:
            value = _HIDDEN  # never print a secret, even a malformed one
        elif loc == ["nats_url"] and isinstance(value, str):
            value = redact_url(value)
        if key in env_keys:
            key += f" (from {env_keys[key]})"
        if etype == "missing":
            problem = "required"
        elif etype in ("extra_forbidden", "invalid_key"):
            name = str(loc[-1])  # YAML keys may be numbers or null: show them as written
            key = _key_path([*loc[:-1], name])
            if model is GRPCRoute and name == "methods":
                problem = "not allowed on a gRPC route (gRPC routes match every method)"
            else:
                problem = "unknown key"
                close = difflib.get_close_matches(name, list(model.model_fields), n=1)
                if close:
                    problem += f" (did you mean {close[0]!r}?)"
        elif etype == _ROUTE_KIND:
            problem = _route_kind_problem(value)
        elif etype == f.INVALID:
            problem = f"{err['msg']} (got {f.show(value)})"
        else:
            problem = f"{err['msg'][:1].lower()}{err['msg'][1:]} (got {f.show(value)})"
        lines.append(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
    return lines


# --- public entry points -------------------------------------------------------------


def parse_config(
    data: object, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate loaded YAML data (a mapping) into a :class:`GatewayConfig`.

    ``source`` names the data in error messages. ``env`` defaults to ``os.environ``;
    only the variables of :data:`ENV_OVERRIDES` are read from it (``NARUN_NATS_URL``,
    ``NARUN_NATS_PASSWORD`` ...): each one set and non-empty replaces its key. Raises
    :class:`ConfigError` listing every problem found, one per line.
    """
    if data is None:
        raise ConfigError(f"{source}: the config is empty; it needs at least 'routes'")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: top level must be a mapping of option names to values (got {f.show(data)})"
        )
    env = os.environ if env is None else env
    fields = dict(data)
    env_keys: dict[str, str] = {}
    for key, var in ENV_OVERRIDES.items():
        value = env.get(var)
        if value:
            fields[key] = value
            env_keys[key] = var
    for key, other in _ENV_REPLACES.items():
        if key in env_keys and other not in env_keys:
            fields.pop(other, None)
    try:
        return GatewayConfig.model_validate(fields)
    except ValidationError as exc:
        raise ConfigError("\n".join(_error_lines(exc, source, env_keys))) from None


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Read and validate the YAML config file at ``path``.

    Raises :class:`ConfigError` if the file cannot be read, is not valid YAML (the
    message gives line and column) or does not validate (see :func:`parse_config`).
    """
    return parse_config(read_yaml(path), source=os.fspath(path), env=env)
