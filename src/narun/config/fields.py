"""The checks of single config values, as pydantic "before" validators.

Each takes the value as written in the file and returns it typed, or rejects it with a
message for people (``must be a number > 0``) through :func:`fail`; the caller adds the
key path and the value. They run before pydantic's own type checks, so that a message
says what the key wants rather than which Python type failed. The gateway config uses
them; a future config file (the node runner's) can too.
"""

from __future__ import annotations

import math
import re
from typing import NoReturn

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from narun.config.addr import service_name_problem, split_addr
from narun.protocol.forwarded import parse_network

__all__ = [
    "INVALID",
    "address",
    "byte_count",
    "fail",
    "grpc_name",
    "method",
    "method_list",
    "nats_url",
    "non_negative_seconds",
    "optional_byte_count",
    "optional_seconds",
    "optional_secret",
    "optional_text",
    "path",
    "proxy",
    "proxy_list",
    "route_list",
    "seconds",
    "service",
    "show",
    "string",
    "unique_methods",
]

INVALID = "narun_invalid"
"""The pydantic error type of every rejection made by :func:`fail`."""

_GRPC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


# --- rejecting a value --------------------------------------------------------------


def fail(problem: str) -> NoReturn:
    """Reject the value being validated with ``problem`` (shown as written)."""
    raise PydanticCustomError(INVALID, "{problem}", {"problem": problem})


def show(value: object) -> str:
    """A bad value as error messages show it: its ``repr``, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- field validators (run before pydantic's own type checks) ------------------------


def string(value: object) -> str:
    """A string, else "must be a string"."""
    if not isinstance(value, str):
        fail("must be a string")
    return value


def seconds(value: object) -> float:
    """A finite number of seconds > 0, as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        fail("must be a number > 0")
    return float(value)


def non_negative_seconds(value: object) -> float:
    """A finite number of seconds >= 0, as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        fail("must be a number >= 0")
    return float(value)


def optional_seconds(value: object) -> float | None:
    """``None``, or a number of seconds > 0."""
    return None if value is None else seconds(value)


def nats_url(value: object) -> str:
    """A non-empty NATS URL without spaces."""
    url = string(value)
    if not url or any(c.isspace() for c in url):
        fail("must be a non-empty URL without spaces, e.g. 'nats://localhost:4222'")
    return url


def address(*, optional: bool) -> BeforeValidator:
    """A validator of a listen address ``host:port``; ``""`` allowed when ``optional``."""

    def check(value: object) -> str:
        addr = string(value)
        if optional and addr == "":
            return addr
        try:
            split_addr(addr)
        except ValueError as exc:
            fail(f"invalid listen address: {exc}")
        return addr

    return BeforeValidator(check)


def service(value: object) -> str:
    """A NATS Micro service name."""
    problem = service_name_problem(value)
    if problem is not None:
        fail(problem)
    return str(value)


def path(value: object) -> str:
    """An HTTP route path: starts with ``/``; no spaces, ``?``, ``#``, ``.`` or ``..`` segments."""
    path = string(value)
    if not path.startswith("/"):
        fail("must start with '/'")
    if any(c.isspace() or not c.isprintable() for c in path) or "?" in path or "#" in path:
        fail("must not contain spaces, control characters, '?' or '#'")
    if any(seg in {".", ".."} for seg in path.split("/")):
        fail("must not contain '.' or '..' segments")
    return path


def method(value: object) -> str:
    """An HTTP method name, trimmed and upper-cased."""
    method = string(value).strip().upper()
    if not _HTTP_TOKEN.fullmatch(method):
        fail("must be an HTTP method name such as 'GET'")
    return method


def method_list(value: object) -> object:
    """A non-empty list of methods (each is then checked by :func:`method`)."""
    if not isinstance(value, list | tuple):
        fail("must be a list of HTTP methods, e.g. ['GET', 'POST']")
    if not value:
        fail("must list at least one HTTP method")
    return value


def unique_methods(methods: tuple[str, ...]) -> tuple[str, ...]:
    """The methods, if none is listed twice."""
    for i, method in enumerate(methods):
        if method in methods[:i]:
            fail(f"lists {method!r} twice")
    return methods


def grpc_name(value: object) -> str:
    """A fully-qualified gRPC service name such as ``hello.v1.Greeter``."""
    name = string(value).strip()
    if not _GRPC_NAME.fullmatch(name):
        fail("must be a fully-qualified gRPC service name such as 'hello.v1.Greeter'")
    return name


def optional_text(value: object) -> str | None:
    """``None``, or a string that is not blank."""
    if value is None:
        return None
    text = string(value)
    if not text.strip():
        fail("must be a non-empty string (or leave the key out)")
    return text


def optional_secret(value: object) -> str | None:
    """``None``, or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        fail("must be a non-empty string")
    return value


def byte_count(value: object) -> int:
    """A whole number of bytes > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        fail("must be a whole number of bytes > 0")
    return value


def optional_byte_count(value: object) -> int | None:
    """``None``, or a whole number of bytes > 0."""
    return None if value is None else byte_count(value)


def switch(value: object) -> bool:
    """``true`` or ``false`` (YAML booleans only, not ``"yes"`` or ``1``)."""
    if not isinstance(value, bool):
        fail("must be true or false")
    return value


def proxy_list(value: object) -> object:
    """A list (each entry is then checked by :func:`proxy`)."""
    if not isinstance(value, list | tuple):
        fail("must be a list of IP addresses or networks, e.g. ['127.0.0.1', '10.0.0.0/8']")
    return value


def proxy(value: object) -> str:
    """An IP address or a CIDR network."""
    entry = string(value).strip()
    try:
        parse_network(entry)
    except ValueError:
        fail("must be an IP address or a CIDR network such as '10.0.0.0/8'")
    return entry


def route_list(value: object) -> object:
    """A list of routes (empty only when ``dynamic_routes`` allows claims: a cross-key check)."""
    if not isinstance(value, list | tuple):
        fail("must be a list of routes")
    return value


def path_prefix(value: object) -> str:
    """A route path ending in ``/``: a subtree that services may claim."""
    prefix = path(value)
    if not prefix.endswith("/"):
        fail("must end with '/' (a prefix: the subtree below it may be claimed)")
    return prefix


def grpc_package(value: object) -> str:
    """A gRPC package (or full service name) such as ``shop.v1``."""
    name = string(value).strip()
    if not _GRPC_NAME.fullmatch(name):
        fail("must be a gRPC package such as 'shop.v1'")
    return name


def rule_list(value: object) -> object:
    """A list of ``dynamic_routes`` rules."""
    if not isinstance(value, list | tuple):
        fail("must be a list of rules, each with 'path_prefix' or 'grpc_package'")
    return value


def service_list(value: object) -> object:
    """A list of NATS Micro service names."""
    if not isinstance(value, list | tuple):
        fail("must be a list of service names")
    return value
