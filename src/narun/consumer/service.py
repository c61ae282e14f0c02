"""A NATS Micro (ADR-32) service that runs each request in its own task.

nats-py delivers a subscription's messages one at a time, and its ``micro`` module awaits
the handler inside that callback, which serializes every request. This service instead
hands each request to its own task under a concurrency limit, answers the ``$SRV``
monitoring verbs itself with correct statistics, and drains: on :meth:`MicroService.stop`
it stops taking requests, finishes the ones in flight, then goes away.

The endpoint's requests come through :class:`narun.transport.direct.DirectDispatch`:
straight from nats-py's parser to :meth:`MicroService._on_request`, which starts, queues
or refuses each one on arrival (no nats-py ``Msg`` queue or subscription task on the
way); replies go out through :func:`narun.transport.direct.publish`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import MaxPayloadError
from nats.nuid import NUID

from narun.protocol import wire
from narun.protocol.micro import (
    EndpointInfo,
    EndpointStats,
    InfoResponse,
    PingResponse,
    StatsResponse,
    control_subjects,
)
from narun.transport.direct import DirectDispatch, DirectMsg, publish

__all__ = ["Handler", "MicroService", "Reply", "error_reply"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers one NATS request with."""

    data: bytes = b""
    """Reply payload."""
    headers: dict[str, str] | None = None
    """NATS reply headers, if any."""
    error: str | None = None
    """When set, the request counts as an error in STATS, with this description."""
    sent: bool = False
    """The handler already answered (a stream): nothing more to publish."""


def error_reply(code: int, description: str) -> Reply:
    """An ADR-32 error reply: ``Nats-Service-Error`` headers and an empty body."""
    return Reply(
        headers={wire.SERVICE_ERROR: description, wire.SERVICE_ERROR_CODE: str(code)},
        error=description,
    )


Handler = Callable[[Msg], Awaitable[Reply]]
"""Turns one request message into its reply. Must not raise for bad input."""

_INTERNAL = error_reply(500, "Internal Server Error")

LATE_DELIVERY_GRACE = 0.25
"""Seconds a draining subscription still serves messages routed to it before its UNSUB."""


@dataclass(slots=True)
class _Counters:
    """The endpoint's STATS counters, in ADR-32's units (nanoseconds)."""

    requests: int = 0
    errors: int = 0
    processing_ns: int = 0
    last_error: str = ""

    def record(self, elapsed_ns: int, error: str | None) -> None:
        self.requests += 1
        self.processing_ns += elapsed_ns
        if error is not None:
            self.errors += 1
            self.last_error = error


OVERLOADED = Reply(
    headers={
        wire.SERVICE_ERROR: "Service overloaded",
        wire.SERVICE_ERROR_CODE: "503",
        wire.OVERLOADED: "1",
    },
    error="Service overloaded",
)
"""The default refusal of a full instance (HTTP endpoints): ADR-32 503, retryable."""


class MicroService:
    """One NATS Micro service instance with a single endpoint.

    The endpoint subject is the service name and the queue group is ``q``, as Go narun
    registers them, so Go and Python gateways and consumers interoperate.
    """

    def __init__(
        self,
        nc: Client,
        *,
        name: str,
        endpoint: str,
        handler: Handler,
        version: str = "0.1.0",
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        subject: str | None = None,
        queue_group: str = wire.QUEUE_GROUP,
        concurrency: int = 100,
        backlog: int | None = None,
        overload_reply: Reply | Callable[[Msg], Reply] | None = None,
        extra_subjects: tuple[str, ...] = (),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if backlog is not None and backlog < 0:
            raise ValueError("backlog must be at least 0")
        self._nc = nc
        self._handler = handler
        self.identity = PingResponse(
            name=name, id=NUID().next().decode(), version=version, metadata=dict(metadata or {})
        )
        """Who this instance is: its PING document."""
        self.description = description
        """Free text shown by ``nats micro info``."""
        self.endpoint = EndpointInfo(
            name=endpoint, subject=subject or name, queue_group=queue_group
        )
        """The endpoint: its INFO entry."""
        self.started = datetime.now(UTC)
        """When the instance started serving (STATS ``started``)."""
        self._counters = _Counters()
        self.concurrency = concurrency
        self.backlog = concurrency if backlog is None else backlog
        """Requests allowed to wait for a slot; beyond that they are refused at once."""
        self._overload = overload_reply or OVERLOADED
        self._tasks: set[asyncio.Task[None]] = set()
        self._refusals: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop
        """The loop serving the requests (set by :meth:`start`)."""
        self._waiting: deque[Msg] = deque()
        self._extra_subjects = extra_subjects
        """More subjects served like the endpoint, same queue group (``<name>.stream``)."""
        self._direct = DirectDispatch.of(nc)
        self._endpoint_sids: list[int] = []
        """The endpoint's subscriptions and the extra subjects' (direct dispatch)."""
        self._control_subs: list[Subscription] = []
        self._stopped = asyncio.Event()

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return len(self._tasks)

    def info(self) -> InfoResponse:
        """This instance's INFO document."""
        me = self.identity
        return InfoResponse(
            name=me.name,
            id=me.id,
            version=me.version,
            description=self.description,
            metadata=me.metadata,
            endpoints=(self.endpoint,),
        )

    def stats(self) -> StatsResponse:
        """This instance's STATS document: the counters as they are now."""
        me, ep, counts = self.identity, self.endpoint, self._counters
        average = counts.processing_ns // counts.requests if counts.requests else 0
        entry = EndpointStats(
            name=ep.name,
            subject=ep.subject,
            queue_group=ep.queue_group,
            num_requests=counts.requests,
            num_errors=counts.errors,
            last_error=counts.last_error,
            processing_time=counts.processing_ns,
            average_processing_time=average,
            data={"in_flight": self.in_flight},  # the node runner's autoscaler reads it
        )
        return StatsResponse(
            name=me.name,
            id=me.id,
            version=me.version,
            started=self.started,
            metadata=me.metadata,
            endpoints=(entry,),
        )

    async def start(self) -> None:
        """Subscribe the endpoint and the monitoring subjects."""
        self.started = datetime.now(UTC)
        self._loop = asyncio.get_running_loop()
        ep = self.endpoint
        for subject in (ep.subject, *self._extra_subjects):
            self._endpoint_sids.append(
                await self._direct.subscribe(subject, self._on_request, queue=ep.queue_group)
            )
        for verb, subject in control_subjects(self.identity.name, self.identity.id):
            self._control_subs.append(await self._nc.subscribe(subject, cb=self._control(verb)))
        await self._nc.flush()
        logger.info(
            "service %s %s started (id %s, endpoint %s on %r, queue %s, concurrency %d)",
            self.identity.name,
            self.identity.version,
            self.identity.id,
            ep.name,
            ep.subject,
            ep.queue_group,
            self.concurrency,
        )

    async def stop(self, *, timeout: float = 30.0) -> None:
        """Stop taking requests, finish those in flight (up to ``timeout``), unsubscribe."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        sids, self._endpoint_sids = self._endpoint_sids, []
        live = [] if self._nc.is_closed else sids
        results = await asyncio.gather(
            *(asyncio.wait_for(self._drain(sid), timeout) for sid in live), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                logger.warning("endpoint drain did not complete cleanly: %r", result)
        if self._tasks:
            logger.info(
                "waiting for %d in-flight and %d waiting request(s)",
                len(self._tasks),
                len(self._waiting),
            )
            deadline = asyncio.get_running_loop().time() + timeout
            # Finishing tasks start the waiting requests, so wait until both are gone.
            while self._tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
                await asyncio.wait(set(self._tasks), timeout=left)
            self._waiting.clear()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                logger.warning(
                    "cancelled %d request(s) still running after %.1fs", len(self._tasks), timeout
                )
        for control in self._control_subs:
            if not self._nc.is_closed:
                try:
                    await control.unsubscribe()
                except Exception:
                    logger.debug("control unsubscribe failed", exc_info=True)
        self._control_subs.clear()
        logger.info("service %s stopped", self.identity.name)

    async def _drain(self, sid: int) -> None:
        """Unsubscribe ``sid`` and still serve what the server had already routed to it.

        nats-py's ``Subscription.drain`` forgets the subscription as soon as the PONG
        after its UNSUB is in: a request that the server had routed to this queue member
        just before the UNSUB, but wrote to the socket after that PONG, is then dropped
        silently and its caller waits for its whole timeout (seen under load in the
        rolling-restart test as one 504 in 320). So the subscription is kept for
        ``LATE_DELIVERY_GRACE`` more seconds before it is removed.
        """
        await self._direct.drain(sid, keep=LATE_DELIVERY_GRACE)

    def _on_request(self, subject: bytes, reply: bytes, data: bytes, raw_headers: bytes) -> None:
        # Runs inside nats-py's parser, once per request, and never blocks it: each
        # request is started, queued, or refused on arrival.
        msg = DirectMsg(self._nc, subject.decode(), reply.decode(), data, raw_headers)
        if len(self._tasks) < self.concurrency:
            self._start(msg)
        elif len(self._waiting) < self.backlog:
            self._waiting.append(msg)
        else:
            # Full: refuse at once, unprocessed, so the gateway can try another
            # instance or answer 503 quickly instead of timing out.
            task = self._loop.create_task(self._refuse(msg))
            self._refusals.add(task)
            task.add_done_callback(self._refusals.discard)

    async def _refuse(self, msg: Msg) -> None:
        refusal = self._overload
        reply = refusal if isinstance(refusal, Reply) else refusal(msg)
        await self._respond(msg, reply)
        self._counters.record(0, reply.error)

    def _start(self, msg: Msg) -> None:
        # self._loop, not get_running_loop(): on Python 3.11 that is a getpid() syscall.
        task = self._loop.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._waiting:
            self._start(self._waiting.popleft())

    async def _serve(self, msg: Msg) -> None:
        started = time.perf_counter_ns()
        try:
            reply = await self._handler(msg)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handler failed for a request on %s", msg.subject)
            reply = _INTERNAL
        error = await self._respond(msg, reply)
        self._counters.record(time.perf_counter_ns() - started, error)

    async def _respond(self, msg: Msg, reply: Reply) -> str | None:
        """Send ``reply``; return the error it counts as in STATS (None for none)."""
        if not msg.reply or reply.sent:
            return reply.error
        try:
            # Alone in flight: write now (a wake-up less); under load the replies of one
            # loop turn go out together through nats-py's flusher.
            alone = len(self._tasks) <= 1
            await publish(self._nc, msg.reply, reply.data, headers=reply.headers, now=alone)
        except MaxPayloadError:
            logger.error(
                "reply of %d bytes exceeds the NATS max_payload of %d bytes",
                len(reply.data),
                self._nc.max_payload,
            )
            too_big = error_reply(500, "Reply exceeds NATS max_payload")
            await self._nc.publish(msg.reply, b"", headers=too_big.headers)
            return too_big.error
        except Exception:
            logger.exception("could not send the reply")
            return "could not send the reply"
        return reply.error

    def _control(self, verb: str) -> Callable[[Msg], Awaitable[None]]:
        async def answer(msg: Msg) -> None:
            doc: PingResponse | InfoResponse | StatsResponse
            if verb == "PING":
                doc = self.identity
            elif verb == "INFO":
                doc = self.info()
            else:
                doc = self.stats()
            if msg.reply:
                await self._nc.publish(msg.reply, json.dumps(doc.as_dict()).encode())

        return answer
