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
- For :func:`publish`: ``Client._send_command``, ``_flush_pending``, ``_flush_queue``,
  ``_pending_data_size`` and ``_max_pending_size``, used as ``Client.publish`` uses them;
  with ``now=True`` also ``_pending``, ``_transport._io_writer`` (nats-py's TCP and TLS
  transports; others go through the flusher), as nats-py's flusher uses them.
- For :meth:`DirectDispatch.drain` with ``keep``: ``Client._send_unsubscribe(sid)``.
- ``nats.aio.client.DEFAULT_BUFFER_SIZE``, the most bytes nats-py's read loop asks the
  socket for at a time (32 KiB): raised to :data:`READ_SIZE` for the whole process when
  the first dispatcher is installed, or before :func:`narun.transport.connect.connect`
  connects, which also sizes the socket reader's buffer (see :func:`raise_read_size`).
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

import nats.aio.client as _nats_client
from nats.aio.client import Client
from nats.aio.client import __version__ as _NATS_VERSION
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)

from narun.protocol.nats import encode_hpub, encode_pub, header_block, parse_header_block

__all__ = [
    "READ_SIZE",
    "DirectDispatch",
    "DirectMsg",
    "Handler",
    "fast_publish",
    "publish",
    "raise_read_size",
    "send_command",
    "write_now",
]

logger = logging.getLogger(__name__)

Handler = Callable[[bytes, bytes, bytes, bytes], None]
"""``handler(subject, reply, data, raw_headers)``: runs synchronously inside nats-py's
parser for every ``MSG``/``HMSG`` of the subscription; must not block or raise (an
exception is logged and swallowed); ``raw_headers`` is ``b""`` for a ``MSG``, else the
whole ``NATS/1.0`` header block as received (see
:func:`narun.protocol.nats.parse_header_block`)."""

READ_SIZE = 256 * 1024
"""What nats-py's read loop asks the socket for at a time once a dispatcher is installed:
a whole stream frame, instead of eight 32 KiB reads (each a parser pass and two copies)."""


def raise_read_size(size: int = READ_SIZE) -> None:
    """Let nats-py's read loop take up to ``size`` bytes per read (process-wide, never
    lowered). The read returns what the socket has; memory stays bounded by the
    stream window, and nats-py's reader keeps at most a couple of reads buffered."""
    current = getattr(_nats_client, "DEFAULT_BUFFER_SIZE", None)
    if isinstance(current, int) and current < size:
        _nats_client.DEFAULT_BUFFER_SIZE = size


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
        raise_read_size()
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

    async def drain(self, sid: int, *, keep: float = 0.0) -> None:
        """Unsubscribe ``sid`` but take the messages the server sent before it saw that
        (a round trip), and those arriving ``keep`` seconds more; then forget it.

        ``keep`` covers messages the server routed to this queue member just before
        the UNSUB but writes after the round trip's PONG (seen under load).
        """
        nc: Any = self.nc
        sub = self._fallback.pop(sid, None) or nc._subs.get(sid)
        try:
            if sub is None or nc.is_closed or nc.is_draining:
                return
            if keep > 0 and hasattr(nc, "_send_unsubscribe"):
                await nc._send_unsubscribe(sid)
                await nc.flush()
                await asyncio.sleep(keep)
            await sub.drain()  # (again) UNSUB, a round trip, what is queued; then forgets it
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


class DirectMsg(Msg):
    """A received message for handlers written for nats-py's ``Msg``: the same
    ``subject``, ``reply``, ``data`` and ``headers``, made without the dataclass's
    ``__init__``; ``headers`` is parsed from the raw block on first use.
    """

    def __init__(self, nc: Client, subject: str, reply: str, data: bytes, raw: bytes) -> None:
        self._client = nc
        self.subject = subject
        self.reply = reply
        self.data = data
        self.raw_headers = raw
        """The ``NATS/1.0`` header block as received (b"" for none)."""
        self._parsed: dict[str, str] | bool | None = False

    @property
    def headers(self) -> dict[str, str] | None:
        """The headers as nats-py's ``Msg.headers`` has them (None when there are none)."""
        parsed = self._parsed
        if parsed is False:
            raw = self.raw_headers
            parsed = self._parsed = (parse_header_block(raw)[0] or None) if raw else None
        return parsed  # type: ignore[return-value]

    @headers.setter
    def headers(self, value: dict[str, str] | None) -> None:
        self._parsed = value


_FAST_PUBLISH = (
    "_send_command",
    "_flush_pending",
    "_flush_queue",
    "_pending_data_size",
    "_max_pending_size",
)

_fast_publish: dict[type[Client], bool] = {}
"""Per client class: whether it has what :func:`publish` uses (set in ``__init__``)."""


async def publish(
    nc: Client,
    subject: str,
    payload: bytes,
    *,
    reply: str = "",
    headers: dict[str, str] | None = None,
    now: bool = False,
) -> None:
    """``nc.publish`` without its per-call validation of subjects and header names.

    ``now``: write to the socket at once instead of waking nats-py's flusher task, which
    writes one event-loop turn later. That saves a wake-up for a lone message; but
    messages published in one turn are best written together (nats-server reads one
    packet instead of many), so callers ask for it only when they know little else is
    going on (the consumer: when this is its only request in flight).

    For subjects known to be valid (a request's reply subject, our own names). Raises
    nats-py's errors as ``Client.publish`` does (closed, draining, outbound buffer full
    while reconnecting, over ``max_payload``, counting the header block too) and
    :class:`narun.errors.NarunError` for a header name that is not a token. Uses
    ``Client.publish`` if the installed nats-py lacks the internals named above.
    """
    if not fast_publish(nc):
        await nc.publish(subject, payload, reply=reply, headers=headers)
        return
    size = len(payload)
    if headers is None:
        command = encode_pub(subject, reply, payload)
        total = size
    else:
        block = header_block(headers)
        command = encode_hpub(subject, reply, block, payload)
        total = size + len(block)
    await send_command(nc, command, size, total, now=now)


def fast_publish(nc: Client) -> bool:
    """Whether ``nc`` has the nats-py internals :func:`publish` and :func:`send_command`
    use (else :func:`publish` falls back to ``Client.publish``)."""
    fast = _fast_publish.get(type(nc))
    if fast is None:
        fast = _fast_publish[type(nc)] = all(hasattr(nc, attr) for attr in _FAST_PUBLISH)
    return fast


async def send_command(
    nc: Client, command: bytes, size: int, total: int, *, now: bool = False
) -> None:
    """Queue an encoded ``PUB``/``HPUB`` ``command`` on ``nc`` (only if
    :func:`fast_publish`), as :func:`publish` does: ``size`` is its payload's length,
    ``total`` that plus the header block's. Raises what :func:`publish` raises."""
    if nc.is_closed:
        raise ConnectionClosedError
    if nc.is_draining_pubs:
        raise ConnectionDrainingError
    if total > nc.max_payload:
        raise MaxPayloadError
    client: Any = nc
    if not nc.is_connected:
        limit = client._max_pending_size
        if limit <= 0 or size + client._pending_data_size > limit:
            raise OutboundBufferLimitError
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    await client._send_command(command)
    if now and write_now(client):
        return
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()


def write_now(nc: Any) -> bool:
    """Write ``nc``'s pending commands to its socket at once, if nothing is queued there
    (else nats-py's flusher task keeps them in order). False: the flusher must do it.

    Uses ``Client._transport._io_writer``, ``_pending`` and ``_pending_data_size``."""
    if not nc.is_connected:
        return False
    writer = getattr(nc._transport, "_io_writer", None)
    if writer is None or writer.transport.get_write_buffer_size():
        return False
    writer.writelines(nc._pending)
    nc._pending = []
    nc._pending_data_size = 0
    return True
