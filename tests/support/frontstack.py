"""The stack of the socket tests of the gateway's HTTP front, and requests in raw bytes."""

from __future__ import annotations

from typing import Any, NamedTuple

from tests.support.procs import unique_service
from tests.support.rawhttp import Conn
from tests.support.stack import Processes

__all__ = [
    "APP",
    "FRONT_HEADER_TIMEOUT",
    "FRONT_MAX_HEADER",
    "FRONT_ROUTE_TIMEOUT",
    "MAX_BODY",
    "Seen",
    "front_stack",
    "get",
    "post",
    "seen",
]

APP = "tests.support.front_apps:app"
MAX_BODY = 100
"""``max_body_bytes`` of the ``/echo/small/`` route."""
FRONT_HEADER_TIMEOUT = 1.0
"""``header_timeout_seconds`` of the gateway of the ``front_port`` fixture (tests/gateway)."""
FRONT_ROUTE_TIMEOUT = 1.5
"""The route timeout of the gateway of the ``front_port`` fixture (tests/gateway)."""
FRONT_MAX_HEADER = 8192
"""``max_header_bytes`` of the gateway of the ``front_port`` fixture (tests/gateway)."""


METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE"]


def front_stack(procs: Processes, *, timeout: float = 5, **settings: Any) -> int:
    """A consumer of :mod:`tests.support.front_apps` and a gateway routing ``/`` to it.

    Routes: ``/`` (every method, ``timeout``) and ``/echo/small/`` (POST, at most
    :data:`MAX_BODY` bytes of body). ``settings`` are more gateway config keys.
    Returns the gateway's port.
    """
    service = unique_service("front")
    procs.consumer(APP, service)
    _, url = procs.gateway(
        [
            {"path": "/", "methods": METHODS, "service": service, "timeout": timeout},
            {
                "path": "/echo/small/",
                "methods": ["POST"],
                "service": service,
                "max_body_bytes": MAX_BODY,
            },
        ],
        **settings,
    )
    return int(url.rsplit(":", 1)[1])


def get(path: str, *fields: str, version: str = "1.1") -> bytes:
    """A GET request (with ``Host``) and more header ``fields``, in bytes."""
    lines = [f"GET {path} HTTP/{version}", "Host: t", *fields, "", ""]
    return "\r\n".join(lines).encode()


def post(path: str, body: bytes, *fields: str) -> bytes:
    """A POST request with ``body`` framed by ``Content-Length``, in bytes."""
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *fields, "", ""]
    return "\r\n".join(head).encode() + body


class Seen(NamedTuple):
    """What the consumer saw of the requests whose path starts with a prefix."""

    requests: int
    """Requests that reached the app at all."""
    whole: int
    """Requests whose body the app read to its end."""
    cancelled: int
    """Requests cancelled while the app was holding them (``/hold/``)."""


def seen(port: int, prefix: str) -> Seen:
    """What the consumer saw of the requests under ``prefix`` (asked through the gateway)."""
    with Conn(port) as conn:
        conn.send(get(f"/seen?prefix={prefix}", "Connection: close"))
        answer = conn.read_answer()
    assert answer.status == 200, answer
    return Seen(*map(int, answer.body.split()))
