"""Waking a service scaled to zero: the subject a gateway asks on. Pure.

A gateway that finds no instance of a service (NATS "no responders") sends a request on
``narun.wake.<service>``; every node runner that runs an app serving ``<service>`` with
``max_replicas`` answers (:data:`WAKE_REPLY` fields, JSON) and starts an instance if there is
none. No answer means nobody can wake it: the gateway answers 503 at once. The gateway then
waits until the service answers ``$SRV.PING.<service>`` and sends the request. See
``docs/routing.md`` (scale to zero) and ``docs/node.md``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["WAKE_PREFIX", "WAKE_WILDCARD", "wake_subject"]

WAKE_PREFIX: Final = "narun.wake."
WAKE_WILDCARD: Final = "narun.wake.*"


def wake_subject(service: str) -> str:
    """The subject that wakes ``service``."""
    return WAKE_PREFIX + service
