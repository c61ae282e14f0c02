"""Scale to zero and on load: the node runner's side (I/O around :mod:`narun.node.scaling`).

:class:`Autoscale` does two things for the apps with ``max_replicas``:

- **Wake.** It answers requests on ``narun.wake.<service>`` (:mod:`narun.protocol.wake`):
  when the app has no instance, it raises the app's count in ``narun-scale`` from zero
  with compare-and-set (so of several nodes and many wakes, one raise wins), which makes
  every node reconcile, and one of them start the instance.
- **Stand in.** An autoscaled app's instances claim its ``routes`` (``docs/routing.md``),
  but at zero there is none to do it; so every node that knows the app announces the same
  routes for it (as instance ``node-<id>``), and gateways keep routing to it, which wakes it.
- **Scale.** On the leader (the lowest id among the live nodes), every second it samples
  each running app's Micro ``STATS`` and writes what its :class:`~narun.node.scaling.Scaler`
  decides: more instances under load, back to ``min_replicas`` when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue

from narun.node.scaling import Sample, ScaleDoc, Scaler, current_replicas
from narun.node.schema import now_iso
from narun.node.spec import AppSpec
from narun.node.store import read_all
from narun.protocol.claims import (
    ANNOUNCE_INTERVAL,
    QUERY_SUBJECT,
    Claim,
    HTTPClaim,
    claim_subject,
    encode_claim,
)
from narun.protocol.micro import MicroDocumentError, parse_stats
from narun.protocol.wake import WAKE_PREFIX, WAKE_WILDCARD

__all__ = ["Autoscale"]

logger = logging.getLogger(__name__)

_SAMPLE_SECONDS = 1.0
_GATHER_SECONDS = 0.25


class Autoscale:
    """Wakes and scales the autoscaled apps; see the module doc."""

    def __init__(
        self,
        nc: Client,
        kv: KeyValue,
        *,
        node_id: str,
        on_change: Callable[[], None],
        read_specs: Callable[[], Awaitable[dict[str, AppSpec]]] | None = None,
    ) -> None:
        self._nc = nc
        self._read_specs = read_specs
        self._kv = kv
        self._node_id = node_id
        self._on_change = on_change
        self._specs: dict[str, AppSpec] = {}
        self._leader = False
        self._scalers: dict[str, Scaler] = {}
        self._sub: Subscription | None = None
        self._query: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._announcer: asyncio.Task[None] | None = None
        self._since = time.time()

    async def start(self) -> None:
        """Answer wakes and start the sampling and announcing loops."""
        self._sub = await self._nc.subscribe(WAKE_WILDCARD, cb=self._on_wake)
        self._query = await self._nc.subscribe(QUERY_SUBJECT, cb=self._on_query)
        self._task = asyncio.create_task(self._loop(), name="narun autoscale")
        self._announcer = asyncio.create_task(self._announce_loop(), name="narun stand-in")

    async def stop(self) -> None:
        """Stop answering and sampling."""
        for task in (self._task, self._announcer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._announcer = None
        for sub in (self._sub, self._query):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._sub = self._query = None
        for claim in self._claims():  # gateways drop the stand-in claims at once
            with contextlib.suppress(Exception):
                down = dataclasses.replace(claim, up=False)
                await self._nc.publish(claim_subject(claim.service), encode_claim(down))

    def update(self, specs: dict[str, AppSpec], live_nodes: set[str]) -> None:
        """What the last reconcile saw: the apps, and the nodes that accept work."""
        self._specs = {name: s for name, s in specs.items() if s.autoscaled}
        self._leader = bool(live_nodes) and min(live_nodes) == self._node_id
        for name in list(self._scalers):
            if self._specs.get(name) != self._scalers[name].spec:
                del self._scalers[name]

    async def docs(self) -> dict[str, ScaleDoc]:
        """The ``narun-scale`` entries, by app."""
        out = {}
        for app, entry in (await read_all(self._kv)).items():
            doc = ScaleDoc.decode(entry.value)
            if doc is not None:
                out[app] = doc
        return out

    # --- stand-in claims ----------------------------------------------------------------

    def _claims(self) -> list[Claim]:
        out = []
        for spec in self._specs.values():
            if spec.routes or spec.grpc_routes:
                out.append(
                    Claim(
                        service=spec.service_name or spec.name,
                        instance=f"node-{self._node_id}",
                        http=tuple(HTTPClaim(r.path, r.methods) for r in spec.routes),
                        grpc=spec.grpc_routes,
                        since=self._since,
                    )
                )
        return out

    async def _announce(self) -> None:
        if not self._nc.is_connected:
            return
        for claim in self._claims():
            await self._nc.publish(claim_subject(claim.service), encode_claim(claim))

    async def _on_query(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            await self._announce()

    async def _announce_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._announce()
            await asyncio.sleep(ANNOUNCE_INTERVAL)

    # --- wake ---------------------------------------------------------------------------

    async def _on_wake(self, msg: Msg) -> None:
        service = msg.subject[len(WAKE_PREFIX) :]
        apps = [s for s in self._specs.values() if s.service_name == service]
        if not apps and self._read_specs is not None:
            # A wake can come right after `narun deploy`, before this node's next reconcile
            # has seen the new spec: read the specs now rather than let the gateway answer
            # 503 for an app that was just deployed.
            with contextlib.suppress(Exception):
                fresh = await self._read_specs()
                self._specs.update({n: s for n, s in fresh.items() if s.autoscaled})
                apps = [s for s in self._specs.values() if s.service_name == service]
        if not apps:
            return  # not ours: stay silent, so "no responders" tells the gateway nobody can
        answer = []
        for spec in apps:
            replicas = await self._raise_from_zero(spec)
            answer.append({"app": spec.name, "replicas": replicas, "node": self._node_id})
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(answer).encode())

    async def _raise_from_zero(self, spec: AppSpec) -> int:
        for _ in range(5):
            entry = await self._get(spec.name)
            doc = None if entry is None else ScaleDoc.decode(entry.value)
            current = current_replicas(spec, doc)
            if current > 0:
                return current
            wanted = ScaleDoc(max(1, spec.min_replicas), "woken by a request", now_iso())
            if await self._put(spec.name, wanted, None if entry is None else entry.revision):
                logger.info("%s woken: scaling to %d", spec.name, wanted.replicas)
                self._on_change()
                return wanted.replicas
        return 0

    # --- scale ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(_SAMPLE_SECONDS)
            if not self._leader:
                self._scalers.clear()
                continue
            for spec in list(self._specs.values()):
                try:
                    await self._scale(spec)
                except Exception as exc:  # a NATS hiccup: the next round retries
                    logger.debug("autoscale of %s: %s", spec.name, exc)

    async def _scale(self, spec: AppSpec) -> None:
        entry = await self._get(spec.name)
        doc = None if entry is None else ScaleDoc.decode(entry.value)
        current = current_replicas(spec, doc)
        now = time.monotonic()
        scaler = self._scalers.get(spec.name)
        if scaler is None:
            scaler = self._scalers[spec.name] = Scaler(spec, now)
        sample = await self._sample(spec.service_name or spec.name) if current > 0 else None
        wanted, reason = scaler.decide(now, current, sample)
        if wanted != current:
            doc = ScaleDoc(wanted, reason, now_iso())
            if await self._put(spec.name, doc, None if entry is None else entry.revision):
                logger.info("%s: scaling %d -> %d (%s)", spec.name, current, wanted, reason)
                self._on_change()

    async def _sample(self, service: str) -> Sample | None:
        nc = self._nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        requests = in_flight = instances = 0
        try:
            await nc.publish(f"$SRV.STATS.{service}", b"", reply=inbox)
            deadline = time.monotonic() + _GATHER_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except nats.errors.TimeoutError:
                    break
                try:
                    stats = parse_stats(msg.data)
                except MicroDocumentError:
                    continue
                instances += 1
                for endpoint in stats.endpoints:
                    requests += endpoint.num_requests
                    data = endpoint.data if isinstance(endpoint.data, dict) else {}
                    value = data.get("in_flight", 0)
                    in_flight += value if isinstance(value, int) else 0
        finally:
            await sub.unsubscribe()
        return Sample(requests, in_flight, instances) if instances else None

    # --- the KV entry -----------------------------------------------------------------

    async def _get(self, app: str) -> KeyValue.Entry | None:
        try:
            return await self._kv.get(app)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None

    async def _put(self, app: str, doc: ScaleDoc, revision: int | None) -> bool:
        try:
            if revision is None:
                await self._kv.create(app, doc.encode())
            else:
                await self._kv.update(app, doc.encode(), last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.BadRequestError):
            return False  # another node wrote first: the caller re-reads
        return True
