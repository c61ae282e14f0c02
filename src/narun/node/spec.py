"""App specs: what ``narun deploy`` stores in ``app-configs`` and what a node runs.

:func:`parse_spec` validates loaded YAML (or the mapping the CLI builds from its flags) into
an immutable :class:`AppSpec`, or raises one :class:`ConfigError` with one line per
problem, each ``<source>: <key path>: <problem>``, as the gateway config does. Pure: no
NATS, no files except in :func:`load_spec`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from narun.config.addr import service_name_problem
from narun.config.fields import INVALID, fail, seconds, show
from narun.config.files import read_yaml
from narun.errors import ConfigError
from narun.node.sandbox import (
    LandlockPath,
    LandlockSpec,
    LocalPort,
    MetricsSpec,
    Mount,
    MountSource,
    NonetSpec,
)
from narun.node.secrets import secret_name_problem
from narun.protocol.claims import DEFAULT_METHODS, ClaimError, HTTPClaim, parse_methods

__all__ = [
    "AppSpec",
    "ArtifactRef",
    "RestartPolicy",
    "RouteSpec",
    "dump_spec",
    "load_spec",
    "parse_spec",
]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"[A-Za-z0-9_.\-/]{1,63}")
_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NOT_SHAPING = frozenset(
    {"replicas", "nodes", "labels", "min_replicas", "max_replicas", "idle_seconds"}
    | {"target_in_flight"}
)
_GRPC_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_RESERVED_ENV = frozenset(
    {
        "NARUN_APP_NAME",
        "NARUN_INSTANCE_ID",
        "NARUN_NODE_ID",
        "NARUN_REPLICA_INDEX",
        "NARUN_RUN_ID",
        "NARUN_WORK_DIR",
    }
)


def _name(value: object) -> str:
    problem = service_name_problem(value)
    if problem:
        fail(problem)
    assert isinstance(value, str)
    if len(value) > 64:
        fail("must be at most 64 characters")
    return value


def _optional_name(value: object) -> str | None:
    return None if value is None else _name(value)


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        fail("must be a string")
    return str(value)


def _target(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TARGET.fullmatch(value):
        fail("must be 'pkg.module:attribute', the app object served with narun serve")
    return value


def _command(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            fail(f"cannot split into words: {exc}")
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        parts = list(value)
    else:
        fail("must be a string or a list of strings")
    if not parts or not parts[0]:
        fail("must name a program")
    return tuple(parts)


def _args(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str | int | float) for x in value):
        fail("must be a list of strings")
    return tuple(str(x) for x in value)


def _env(value: object) -> dict[str, str]:
    """A mapping, or Go narun's list of ``{name, value}``."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, str] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict) or set(item) - {"name", "value"} or "name" not in item:
                fail(f"item {i} must be a mapping with 'name' and 'value' (or 'valueFromSecret')")
            out[str(item["name"])] = item.get("value", "")
        value = out
    if not isinstance(value, dict):
        fail("must be a mapping of variable names to values")
    env: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            fail(f"{key!r} is not an environment variable name")
        if key in _RESERVED_ENV:
            fail(f"{key} is set by the node, not by the spec")
        if val is None or isinstance(val, bool) or not isinstance(val, str | int | float):
            fail(f"{key}: value must be a string")
        env[key] = str(val)
    return env


def _secret_env(value: object) -> dict[str, str]:
    """``{variable: secret name}``; filled from ``env`` entries with ``valueFromSecret``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("must be a mapping of variable names to secret names")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            fail(f"{key!r} is not an environment variable name")
        if key in _RESERVED_ENV:
            fail(f"{key} is set by the node, not by the spec")
        problem = secret_name_problem(val)
        if problem:
            fail(f"{key}: {problem} (got {show(val)})")
        out[key] = str(val)
    return out


def _split_secrets(env: object) -> tuple[object, dict[str, object]]:
    """Move ``valueFromSecret`` entries (Go's list form, or ``NAME: {valueFromSecret: s}``)."""
    secret: dict[str, object] = {}
    if isinstance(env, list):
        rest: list[object] = []
        for item in env:
            if isinstance(item, dict) and "valueFromSecret" in item:
                if "value" in item:
                    fail(f"{item.get('name')!r}: give 'value' or 'valueFromSecret', not both")
                if set(item) - {"name", "valueFromSecret"} or "name" not in item:
                    fail("an item with 'valueFromSecret' has only 'name' and 'valueFromSecret'")
                secret[str(item["name"])] = item["valueFromSecret"]
            else:
                rest.append(item)
        return rest, secret
    if isinstance(env, dict):
        plain: dict[object, object] = {}
        for key, val in env.items():
            if isinstance(val, dict):
                if set(val) != {"valueFromSecret"}:
                    fail(f"{key}: a mapping value must be {{valueFromSecret: <secret name>}}")
                secret[str(key)] = val["valueFromSecret"]
            else:
                plain[key] = val
        return plain, secret
    return env, secret


def _methods(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
        fail("must be a list of HTTP methods")
    try:
        return parse_methods(",".join(value))
    except ClaimError as exc:
        fail(str(exc))


def _grpc_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) for m in value):
        fail("must be a list of gRPC service names such as 'shop.v1.Cart'")
    for name in value:
        if not _GRPC_NAME.fullmatch(name):
            fail(f"{name!r} is not a gRPC service name such as 'shop.v1.Cart'")
    return tuple(value)


def _alias(name: str) -> AliasChoices:
    head, *rest = name.split("_")
    return AliasChoices(name, head + "".join(w.title() for w in rest))


def _optional_count(minimum: int) -> BeforeValidator:
    def check(value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(f"must be a whole number >= {minimum}")
        return value

    return BeforeValidator(check)


def _count(minimum: int) -> BeforeValidator:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(f"must be a whole number >= {minimum}")
        return value

    return BeforeValidator(check)


def _pins(value: object) -> dict[str, int]:
    """``{node: count}``, or Go narun's list of ``{name, replicas}``."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, dict) or "name" not in item:
                fail(f"item {i} must be a mapping with 'name' and 'replicas'")
            if item["name"] in out:
                fail(f"node {item['name']!r} is listed twice")
            out[item["name"]] = item.get("replicas", 1)
        value = out
    if not isinstance(value, dict):
        fail("must be a mapping of node IDs to replica counts")
    pins: dict[str, int] = {}
    for node, count in value.items():
        if not isinstance(node, str) or not _NODE_ID.fullmatch(node):
            fail(f"{node!r} is not a node ID (letters, digits, '_' and '-')")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            fail(f"{node}: replica count must be a whole number >= 1 (got {show(count)})")
        pins[node] = count
    return pins


def _labels(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail("must be a mapping of label names to values")
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not _LABEL.fullmatch(key):
            fail(f"{key!r} is not a label name")
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            fail(f"{key}: value must be a string")
        out[key] = str(val)
    return out


class RestartPolicy(BaseModel):
    """How a crashed instance is restarted, and when the node gives up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_restarts: Annotated[int, _count(0)] = 5
    """Restarts in a row (runs shorter than ``reset_after_seconds``) before ``failed``."""
    backoff_seconds: Annotated[float, BeforeValidator(seconds)] = 1.0
    """Wait before the first restart; doubles at each further restart."""
    max_backoff_seconds: Annotated[float, BeforeValidator(seconds)] = 30.0
    """Ceiling of the wait between restarts."""
    reset_after_seconds: Annotated[float, BeforeValidator(seconds)] = 60.0
    """A run that stayed up this long resets the count."""

    def backoff(self, restarts: int) -> float:
        """Seconds to wait before restart number ``restarts`` (1-based)."""
        return min(self.backoff_seconds * 2.0 ** max(restarts - 1, 0), self.max_backoff_seconds)


class ArtifactRef(BaseModel):
    """The packed project or executable in the ``app-binaries`` Object Store (set by deploy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object: Annotated[str, BeforeValidator(_text)]
    """Object name in the store."""
    digest: Annotated[str, BeforeValidator(_text)]
    """``SHA-256=`` + urlsafe base64 of the bytes' SHA-256."""
    kind: Literal["python", "executable"]
    """``python``: a project with its wheels; ``executable``: a program file."""


class RouteSpec(BaseModel):
    """One HTTP route the app's instances claim (``narun serve --route``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Annotated[str, BeforeValidator(_text)]
    """Path; ending in ``/`` claims the subtree."""
    methods: Annotated[tuple[str, ...], BeforeValidator(_methods)] = DEFAULT_METHODS
    """HTTP methods (default: the common ones)."""

    @model_validator(mode="after")
    def _valid_claim(self) -> RouteSpec:
        try:
            HTTPClaim(self.path, self.methods)
        except ClaimError as exc:
            raise ValueError(str(exc).removeprefix(f"route {self.path!r}: ")) from None
        return self

    def flag(self) -> str:
        """The ``--route`` value of ``narun serve``: ``METHODS PATH``."""
        return f"{','.join(self.methods)} {self.path}"


class AppSpec(BaseModel):
    """One app: what to run, how many, where, and how to keep it running."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, BeforeValidator(_name)]
    """App name: the ``app-configs`` key, part of subjects and instance IDs."""
    tag: Annotated[str | None, BeforeValidator(lambda v: None if v is None else _text(v))] = None
    """A version label of your choice, shown by ``apps ls`` (default: the spec's hash)."""
    app: Annotated[str | None, BeforeValidator(_target)] = None
    """``pkg.module:app``: an ASGI/WSGI app (or gRPC ``register``) run with ``narun serve``."""
    service: Annotated[str | None, BeforeValidator(_optional_name)] = None
    """NATS Micro service name for ``app`` (default: ``name``)."""
    interface: Literal["auto", "asgi", "wsgi", "grpc"] = "auto"
    """``--interface`` of ``narun serve``."""
    command: Annotated[tuple[str, ...] | None, BeforeValidator(_command)] = None
    """Any program instead of ``app`` (a string is split like a shell would)."""
    args: Annotated[tuple[str, ...], BeforeValidator(_args)] = ()
    """More arguments: after ``command``, the executable, or ``narun serve``'s."""
    env: Annotated[dict[str, str], BeforeValidator(_env)] = {}
    """Environment variables of every instance."""
    secret_env: Annotated[dict[str, str], BeforeValidator(_secret_env)] = {}
    """``{variable: secret name}``: decrypted from ``narun-secrets`` by the node at start.

    Written as ``env`` entries with ``valueFromSecret`` (Go's form); only the names are in
    the spec, so a changed secret is not a new version (the node restarts its users)."""
    replicas: Annotated[int, _count(0)] = 1
    """Instances over all nodes (with ``nodes``: their sum, if given it must match)."""
    nodes: Annotated[dict[str, int], BeforeValidator(_pins)] = {}
    """Pins: ``{node ID: count}``; those instances run there and nowhere else."""
    labels: Annotated[dict[str, str], BeforeValidator(_labels)] = {}
    """Only nodes started with all of these ``--label key=value`` run the app."""
    restart: RestartPolicy = RestartPolicy()
    """Restart backoff and give-up budget."""
    stop_grace_seconds: Annotated[float, BeforeValidator(seconds)] = 10.0
    """Between SIGTERM and SIGKILL when an instance is stopped."""
    ready_timeout_seconds: Annotated[float, BeforeValidator(seconds)] = 60.0
    """How long a new instance may take to become ready before it counts as crashed."""
    ready_seconds: Annotated[float, BeforeValidator(seconds)] = 1.0
    """A ``command`` (no Micro service to watch) is ready once up this long."""
    min_replicas: Annotated[int, _count(0), Field(validation_alias=_alias("min_replicas"))] = 0
    """With ``max_replicas``: the fewest instances; ``0`` lets the app scale to zero."""
    max_replicas: Annotated[
        int | None, _optional_count(1), Field(validation_alias=_alias("max_replicas"))
    ] = None
    """Set to scale the app between ``min_replicas`` and this on load (replaces ``replicas``)."""
    idle_seconds: Annotated[
        float, BeforeValidator(seconds), Field(validation_alias=_alias("idle_seconds"))
    ] = 300.0
    """With ``max_replicas``: no request for this long scales down to ``min_replicas``."""
    target_in_flight: Annotated[
        int, _count(1), Field(validation_alias=_alias("target_in_flight"))
    ] = 10
    """With ``max_replicas``: in-flight requests per instance above this start another."""
    routes: tuple[RouteSpec, ...] = ()
    """HTTP routes the instances claim; gateways allow them with ``dynamic_routes``."""
    grpc_routes: Annotated[tuple[str, ...], BeforeValidator(_grpc_names)] = ()
    """gRPC services (``shop.v1.Cart``) the instances claim."""
    artifact: ArtifactRef | None = None
    """Set by ``narun deploy``; without it the node runs ``app``/``command`` as installed."""
    mode: Literal["exec", "landlock"] = "exec"
    """``landlock``: the instance may only use the paths ``landlock`` allows (Linux)."""
    landlock: LandlockSpec = LandlockSpec()
    """Path groups and paths a ``mode: landlock`` instance may use."""
    mounts: tuple[Mount, ...] = ()
    """Files from ``narun-files`` placed read-only in the instance's work directory."""
    nonet: NonetSpec | None = None
    """An own network namespace: no network but the declared host ports (Linux, root)."""
    user: Annotated[str | None, BeforeValidator(lambda v: None if v is None else _text(v))] = None
    """Run as this user (name or uid; the node must be root)."""
    memoryMB: Annotated[int | None, Field(ge=1)] = None
    """Soft memory limit, MiB (cgroup ``memory.low`` / ``soft_limit_in_bytes``)."""
    memoryMaxMB: Annotated[int | None, Field(ge=1)] = None
    """Hard memory limit, MiB (default ``memoryMB``): over it the instance ends as ``oom``."""
    cpuCores: Annotated[float | None, Field(gt=0, le=1024)] = None
    """CPU time per wall-clock time (``0.5``: half a core)."""
    cgroupParent: str | None = None
    """Cgroup to create the instance's cgroups below (default: the node's own)."""
    metrics: MetricsSpec | None = None
    """The instance's own metrics port, advertised on the node's ``/discovery``."""
    _salt: str = PrivateAttr(default="")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and "env" in data:
            try:
                env, secret = _split_secrets(data["env"])
            except PydanticCustomError as exc:
                problem = (exc.context or {}).get("problem", exc.message())
                raise PydanticCustomError(
                    INVALID, "{problem}", {"problem": f"env: {problem}"}
                ) from None
            if secret:
                both = set(secret) & set(data.get("secret_env") or {})
                if both:
                    raise PydanticCustomError(
                        INVALID, "{problem}", {"problem": f"env: {sorted(both)[0]} given twice"}
                    )
                data = {
                    **data,
                    "env": env,
                    "secret_env": {**(data.get("secret_env") or {}), **secret},
                }
        return data

    @model_validator(mode="before")
    @classmethod
    def _replicas_from_pins(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("nodes"), dict | list):
            try:
                pins = _pins(data["nodes"])
            except PydanticCustomError:
                return data  # the field validator reports it
            total = sum(pins.values())
            if "replicas" not in data:
                data = {**data, "replicas": total}
            elif data["replicas"] != total:
                raise PydanticCustomError(
                    INVALID,
                    "{problem}",
                    {
                        "problem": f"replicas: {data['replicas']!r} does not match the "
                        f"{total} instances pinned by 'nodes' (leave one out)"
                    },
                )
        return data

    @model_validator(mode="after")
    def _one_way_to_run(self) -> AppSpec:
        executable = self.artifact is not None and self.artifact.kind == "executable"
        ways = [x for x, on in (("app", self.app), ("command", self.command)) if on]
        if len(ways) > 1:
            raise ValueError("give 'app' or 'command', not both")
        if not ways and not executable:
            raise ValueError("needs 'app' (pkg.module:app) or 'command' (or an executable)")
        if self.service and not self.app:
            raise ValueError("'service' goes with 'app'")
        if (
            self.memoryMB is not None
            and self.memoryMaxMB is not None
            and self.memoryMaxMB < self.memoryMB
        ):
            raise ValueError("memoryMaxMB: must be >= memoryMB")
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"env: {both[0]} has both a value and a valueFromSecret")
        if self.max_replicas is not None:
            if "replicas" in self.model_fields_set or self.nodes:
                raise ValueError("'max_replicas' scales the app: leave out 'replicas' and 'nodes'")
            if self.min_replicas > self.max_replicas:
                raise ValueError("min_replicas must not be above max_replicas")
            if not self.app:
                raise ValueError("'max_replicas' goes with 'app' (its Micro service is watched)")
        elif "min_replicas" in self.model_fields_set:
            raise ValueError("'min_replicas' goes with 'max_replicas'")
        if (self.routes or self.grpc_routes) and not self.app:
            raise ValueError("'routes' and 'grpc_routes' go with 'app' (narun serve claims them)")
        return self

    def salted(self, salt: str) -> AppSpec:
        """This spec with a node-side ``salt`` (the revisions of its secrets) in :attr:`run_key`."""
        copy = self.model_copy()
        copy._salt = salt
        return copy

    @property
    def run_key(self) -> str:
        """What a node compares to decide a restart: the version plus its secrets' revisions."""
        return f"{self.digest}+{self._salt}" if self._salt else self.digest

    @property
    def autoscaled(self) -> bool:
        """Whether the node runners choose the instance count (``max_replicas`` set)."""
        return self.max_replicas is not None

    @property
    def service_name(self) -> str | None:
        """The Micro service whose registration tells an instance is ready, if any."""
        return (self.service or self.name) if self.app else None

    @property
    def digest(self) -> str:
        """A hash of everything that shapes an instance: a change is a new version."""
        data = self.model_dump(mode="json", exclude=set(_NOT_SHAPING))
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def version(self) -> str:
        """What ``apps ls`` shows: ``tag`` plus the hash, or the hash."""
        return f"{self.tag}-{self.digest}" if self.tag else self.digest


def _key_path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _models(loc: Sequence[str | int]) -> type[BaseModel]:
    if loc and loc[0] == "restart":
        return RestartPolicy
    if loc and loc[0] == "artifact":
        return ArtifactRef
    if loc and loc[0] == "landlock":
        return LandlockPath if len(loc) > 2 else LandlockSpec
    if loc and loc[0] == "mounts":
        return MountSource if "source" in loc else Mount
    if loc and loc[0] == "nonet":
        return LocalPort if len(loc) > 2 else NonetSpec
    if loc and loc[0] == "metrics":
        return MetricsSpec
    if loc and loc[0] == "routes":
        return RouteSpec
    return AppSpec


def _error_lines(exc: ValidationError, source: str) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        key, etype, value = _key_path(loc), err["type"], err.get("input")
        if etype == "missing":
            problem = "required"
        elif etype == "extra_forbidden":
            name = str(loc[-1])
            problem = "unknown key"
            close = difflib.get_close_matches(name, list(_models(loc[:-1]).model_fields), n=1)
            if close:
                problem += f" (did you mean {close[0]!r}?)"
        elif etype == INVALID:
            problem = err["msg"]
            if "(got" not in problem and not isinstance(value, dict):
                problem += f" (got {show(value)})"
        elif etype == "value_error":
            problem = err["msg"].removeprefix("Value error, ")
        else:
            problem = f"{err['msg'][:1].lower()}{err['msg'][1:]} (got {show(value)})"
        lines.append(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
    return lines


def parse_spec(data: object, *, source: str = "<spec>") -> AppSpec:
    """Validate loaded YAML data into an :class:`AppSpec`; :class:`ConfigError` lists problems."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: an app spec is a mapping of keys to values (got {show(data)})"
        )
    try:
        return AppSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError("\n".join(_error_lines(exc, source))) from None


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a spec file into a mapping (validate it with :func:`parse_spec`).

    The YAML is read as the gateway config is (:func:`narun.config.files.read_yaml`: a key
    given twice is an error, line and column in syntax errors).
    """
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{os.fspath(path)}: an app spec is a mapping of keys to values")
    return data


def dump_spec(spec: AppSpec) -> bytes:
    """The YAML stored in ``app-configs`` (defaults left out, so it reads like the input)."""
    data = spec.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    data["name"] = spec.name
    return yaml.safe_dump(data, sort_keys=False).encode()
