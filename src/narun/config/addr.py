"""Listen addresses and service names: cheap checks shared by every program.

No pydantic, no YAML: the consumer, the ops endpoint and the CLI parse an address or check
a service name without loading the gateway's config machinery.
"""

from __future__ import annotations

import ipaddress
import re

from narun.errors import ConfigError

__all__ = ["parse_addr", "service_name_problem", "split_addr", "validate_service_name"]

_SERVICE_NAME = re.compile(r"[A-Za-z0-9_-]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")


def service_name_problem(name: object) -> str | None:
    """Why ``name`` is not a NATS Micro service name, or None if it is one."""
    if not isinstance(name, str):
        return "must be a string"
    if not _SERVICE_NAME.fullmatch(name):
        return "must be a NATS Micro service name: letters, digits, '_' and '-' only"
    return None


def validate_service_name(name: str) -> str:
    """Return ``name`` if it is a valid NATS Micro service name (ADR-32), else raise.

    Valid names match ``^[A-Za-z0-9_-]+$``: no dots, spaces or wildcards, since the
    name becomes a subject token. Raises :class:`ConfigError`.
    """
    problem = service_name_problem(name)
    if problem is not None:
        raise ConfigError(f"invalid service name {name!r}: {problem}")
    return name


def split_addr(addr: str) -> tuple[str, int]:
    """Parse ``host:port``; raise ``ValueError`` with the reason (no value in it)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError("expected 'host:port' or ':port'")
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError("port must be a number 0..65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1])), int(port)
        except ValueError:
            raise ValueError("invalid IPv6 address in brackets") from None
    if ":" in host:
        raise ValueError("IPv6 addresses need brackets, e.g. '[::1]:8080'")
    if not host:
        return "0.0.0.0", int(port)
    if host.replace(".", "").isdigit():
        try:
            return str(ipaddress.IPv4Address(host)), int(port)
        except ValueError:
            raise ValueError("invalid IPv4 address") from None
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in host.split(".")):
        raise ValueError("invalid host name")
    return host, int(port)


def parse_addr(addr: str) -> tuple[str, int]:
    """Split a Go-style listen address into ``(host, port)``.

    ``":8080"`` gives ``("0.0.0.0", 8080)``; ``"[::1]:8080"`` gives ``("::1", 8080)``.
    Raises :class:`ConfigError` if ``addr`` is not ``host:port`` with port 0..65535.
    """
    try:
        return split_addr(addr)
    except ValueError as exc:
        raise ConfigError(f"invalid listen address {addr!r}: {exc}") from None
