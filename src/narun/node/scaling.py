"""How many instances an autoscaled app should run: the decision, pure.

An app with ``max_replicas`` runs between ``min_replicas`` and ``max_replicas`` instances.
The count lives in the KV bucket ``narun-scale`` (key = app, :class:`ScaleDoc`), so every
node plans with the same number; a wake raises it from zero, and one node (the lowest
live node id) samples the service's Micro ``STATS`` every second and feeds a
:class:`Scaler`, which answers the new count.

The signal is the service's own Micro statistics: ``num_requests`` (summed over the
instances: did any request arrive?) and ``in_flight`` (narun's consumers put it in the
endpoint's ``data``: how busy are they now?). They come from the instances themselves, so
they count every request whichever gateway (Go or Python, one or ten) sent it, need no
metrics scraping, and are there as soon as an instance registers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from narun.node.spec import AppSpec

__all__ = ["Sample", "ScaleDoc", "Scaler", "current_replicas"]

SUSTAIN_SECONDS = 1.5
"""Load must stay above the target this long before another instance starts."""


@dataclass(frozen=True, slots=True)
class ScaleDoc:
    """The ``narun-scale`` entry of one app."""

    replicas: int
    reason: str = ""
    time: str = ""

    def encode(self) -> bytes:
        """JSON bytes."""
        return json.dumps(
            {"replicas": self.replicas, "reason": self.reason, "time": self.time}
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> ScaleDoc | None:
        """Parse an entry; ``None`` if it is not one."""
        try:
            doc = json.loads(raw or b"")
            replicas = doc["replicas"]
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            return None
        return cls(replicas, str(doc.get("reason", "")), str(doc.get("time", "")))


def current_replicas(spec: AppSpec, doc: ScaleDoc | None) -> int:
    """The instance count to plan: ``replicas``, or the scale entry clamped to the bounds."""
    if spec.max_replicas is None:
        return spec.replicas
    wanted = spec.min_replicas if doc is None else doc.replicas
    return max(spec.min_replicas, min(spec.max_replicas, wanted))


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the service's STATS."""

    requests: int
    """``num_requests`` summed over the instances that answered."""
    in_flight: int
    """Requests being handled now, summed."""
    instances: int
    """Instances that answered."""


class Scaler:
    """The decision for one app; call :meth:`decide` about once a second."""

    def __init__(self, spec: AppSpec, now: float) -> None:
        self.spec = spec
        self._requests: int | None = None
        self._last_active = now
        self._above_since: float | None = None
        self._below_since: float | None = None
        self._current: int | None = None

    def decide(self, now: float, current: int, sample: Sample | None) -> tuple[int, str]:
        """The count to run (and why) given the ``current`` count and what STATS said."""
        spec = self.spec
        assert spec.max_replicas is not None
        if current != self._current:  # a wake or another scale: give it time to serve
            self._current = current
            self._last_active = now
            self._above_since = self._below_since = None
        if sample is None:
            return current, ""
        if sample.in_flight > 0 or (
            self._requests is not None and sample.requests > self._requests
        ):
            self._last_active = now
        self._requests = sample.requests
        idle = now - self._last_active
        if current > spec.min_replicas and idle >= spec.idle_seconds:
            return spec.min_replicas, f"idle for {idle:.0f}s"
        needed = math.ceil(sample.in_flight / spec.target_in_flight)
        if needed > current and current < spec.max_replicas and sample.instances >= current:
            self._below_since = None
            if self._above_since is None:
                self._above_since = now
            if now - self._above_since >= SUSTAIN_SECONDS:
                target = min(spec.max_replicas, max(current + 1, needed))
                return target, f"{sample.in_flight} in flight on {sample.instances} instances"
            return current, ""
        self._above_since = None
        if needed < current - 1 and current > max(spec.min_replicas, 1):
            if self._below_since is None:
                self._below_since = now
            if now - self._below_since >= spec.idle_seconds:
                self._below_since = now
                return current - 1, f"{sample.in_flight} in flight for {current} instances"
        else:
            self._below_since = None
        return current, ""
