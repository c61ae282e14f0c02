"""Messages of chosen subscriptions handed straight from nats-py's parser to a function.

nats-py delivers every message as a ``Msg`` object, put on the subscription's pending
queue and taken off it by the subscription's task, which then awaits the callback: an
object, two queue operations and a task switch per message. On the hot paths (the
gateway's replies, the consumer's requests) :class:`DirectDispatch` instead calls a plain
function with the raw parts, inside the parser's loop, for the subscriptions it made;
every other subscription goes through nats-py unchanged.

Everything else stays nats-py's: connecting, auth, TLS, reconnects, cluster discovery,
lame duck mode, PING/PONG, flushing. A direct subscription is a real nats-py
``Subscription`` in ``Client._subs``, so nats-py re-subscribes it after a reconnect, drains
it with the client and drops it on close; it has no task (it is made with a ``future``
that is never resolved, nats-py's one-shot request form, which starts none).

The nats-py internals this relies on (checked when a client is first seen; if one is
missing every subscription falls back to a plain nats-py one, with a warning):

- ``Client._process_msg(sid, subject, reply, data, headers)``: what the parser awaits for
  every ``MSG``/``HMSG``. It is shadowed on the client instance (not on the class) by a
  coroutine that serves direct sids and passes the others on to the original.
- ``Client._subs`` (sid -> ``Subscription``), ``Client.stats`` (``in_msgs``,
  ``in_bytes``) and the subscription's ``_received`` / ``_max_msgs`` / ``_future``, kept
  as nats-py's own ``_process_msg`` keeps them.

This module sits under nats-py rather than beside it (our own protocol connection) so
that connection management stays nats-py's; see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.client import __version__ as _NATS_VERSION
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from narun.protocol.nats import header_block

__all__ = ["DirectDispatch", "Handler"]

logger = logging.getLogger(__name__)

Handler = Callable[[bytes, bytes, bytes, bytes], None]
"""``handler(subject, reply, data, raw_headers)``: runs synchronously inside nats-py's
parser for every ``MSG``/``HMSG`` of the subscription; must not block or raise (an
exception is logged and swallowed); ``raw_headers`` is ``b""`` for a ``MSG``, else the
whole ``NATS/1.0`` header block as received (see
:func:`narun.protocol.nats.parse_header_block`)."""

_PROCESS_MSG_PARAMS = ["sid", "subject", "reply", "data", "headers"]
_SUB_ATTRS = ("_received", "_max_msgs", "_future", "_id")

_instances: weakref.WeakKeyDictionary[Client, DirectDispatch] = weakref.WeakKeyDictionary()


def _supported(nc: Client) -> str:
    """ "" if ``nc`` has the internals this module relies on, else what is missing."""
    process = getattr(nc, "_process_msg", None)
    if process is None or not inspect.iscoroutinefunction(process):
        return "Client._process_msg"
    if list(inspect.signature(process).parameters) != _PROCESS_MSG_PARAMS:
        return "Client._process_msg(sid, subject, reply, data, headers)"
    if not isinstance(getattr(nc, "_subs", None), dict):
        return "Client._subs"
    if not isinstance(getattr(nc, "stats", None), dict):
        return "Client.stats"
    try:
        probe = Subscription(nc, 0, "probe", future=None)
    except Exception:
        return "Subscription(conn, id, subject, future=...)"
    missing = [attr for attr in _SUB_ATTRS if not hasattr(probe, attr)]
    if missing:
        return "Subscription." + ", ".join(missing)
    return ""


class DirectDispatch:
    """Per nats-py ``Client``: messages of chosen sids go to a plain function, not to a
    ``Msg``, a pending queue and a subscription task; every other sid goes through nats-py
    as before."""

    def __init__(self, nc: Client) -> None:
        """Use :meth:`of`: one instance per client."""
        self.nc = nc
        self._handlers: dict[int, Handler] = {}
        # Messages of a direct subscription that arrive before subscribe() has its sid
        # (only if nats-py's subscribe ever suspends before returning).
        self._early: dict[int, list[tuple[bytes, bytes, bytes, bytes]]] = {}
        self._marker: asyncio.Future[None] | None = None
        self._fallback: dict[int, Subscription] = {}
        missing = _supported(nc)
        self.direct = not missing
        """False if the installed nats-py lacks what this needs: plain subscriptions then."""
        if missing:
            logger.warning(
                "nats-py %s lacks %s: direct dispatch falls back to plain subscriptions",
                _NATS_VERSION,
                missing,
            )
            return
        self._original: Callable[[int, bytes, bytes, bytes, bytes | None], Awaitable[None]]
        self._original = nc._process_msg  # type: ignore[assignment]
        # An instance attribute shadows the method: the parser awaits this one.
        nc._process_msg = self._process_msg  # type: ignore[method-assign]

    @classmethod
    def of(cls, nc: Client) -> DirectDispatch:
        """The dispatcher of ``nc``: installed the first time, then the same one."""
        found = _instances.get(nc)
        if found is None:
            found = _instances[nc] = cls(nc)
        return found

    async def subscribe(self, subject: str, handler: Handler, *, queue: str = "") -> int:
        """Subscribe ``subject`` (in queue group ``queue``) with ``handler``; return the sid.

        Raises what ``Client.subscribe`` raises (bad subject, closed, draining).
        """
        nc = self.nc
        if not self.direct:
            return await self._subscribe_plain(subject, handler, queue)
        if self._marker is None:
            self._marker = asyncio.get_running_loop().create_future()
        sub = await nc.subscribe(subject, queue=queue, future=self._marker)
        sid: int = sub._id
        self._handlers[sid] = handler
        for early in self._early.pop(sid, ()):
            self._call(handler, *early)
        return sid

    async def unsubscribe(self, sid: int) -> None:
        """Stop the subscription ``sid`` at once; messages still on the way are dropped."""
        self._handlers.pop(sid, None)
        sub = self._fallback.pop(sid, None) or self.nc._subs.get(sid)
        if sub is None or self.nc.is_closed or self.nc.is_draining:
            return
        await sub.unsubscribe()

    async def drain(self, sid: int) -> None:
        """Unsubscribe ``sid`` but take the messages the server sent before it saw that
        (a round trip); then the subscription is gone."""
        sub = self._fallback.pop(sid, None) or self.nc._subs.get(sid)
        try:
            if sub is not None and not (self.nc.is_closed or self.nc.is_draining):
                await sub.drain()  # type: ignore[no-untyped-call]
        finally:
            self._handlers.pop(sid, None)

    def active(self, sid: int) -> bool:
        """Whether subscription ``sid`` still receives messages."""
        return sid in self.nc._subs

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        handler = self._handlers.get(sid)
        if handler is None:
            sub = self.nc._subs.get(sid)
            if self._marker is None or sub is None or sub._future is not self._marker:
                await self._original(sid, subject, reply, data, headers)
                return
            # Ours, but subscribe() has not got its sid back yet: keep it for then.
            self._count(sub, sid, data)
            self._early.setdefault(sid, []).append((subject, reply, data, headers or b""))
            return
        sub = self.nc._subs.get(sid)
        if sub is None:
            # Unsubscribed, drained or closed: drop it, as nats-py does.
            stats = self.nc.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            self._handlers.pop(sid, None)
            return
        self._count(sub, sid, data)
        try:
            handler(subject, reply, data, headers or b"")
        except Exception:
            logger.exception("direct NATS message handler failed (subject %r)", subject)

    def _count(self, sub: Subscription, sid: int, data: bytes) -> None:
        nc = self.nc
        stats = nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        if sub._max_msgs > 0 and sub._received >= sub._max_msgs:
            nc._subs.pop(sid, None)

    @staticmethod
    def _call(handler: Handler, subject: bytes, reply: bytes, data: bytes, raw: bytes) -> None:
        try:
            handler(subject, reply, data, raw)
        except Exception:
            logger.exception("direct NATS message handler failed (subject %r)", subject)

    async def _subscribe_plain(self, subject: str, handler: Handler, queue: str) -> int:
        async def deliver(msg: Msg) -> None:
            self._call(
                handler,
                msg.subject.encode(),
                msg.reply.encode(),
                msg.data,
                _block_of(msg.headers),
            )

        sub = await self.nc.subscribe(subject, queue=queue, cb=deliver)
        sid: int = sub._id
        self._fallback[sid] = sub
        return sid


def _block_of(headers: dict[str, str] | None) -> bytes:
    """A header block that :func:`parse_header_block` reads back as ``headers``."""
    if not headers:
        return b""
    rest: dict[str, Any] = dict(headers)
    status = rest.pop("Status", "")
    description = rest.pop("Description", "")
    if not status:
        return header_block(headers)
    line = f"NATS/1.0 {status} {description}".rstrip() + "\r\n"
    lines = "".join(f"{k}: {v}\r\n" for k, v in rest.items())
    return (line + lines + "\r\n").encode()
