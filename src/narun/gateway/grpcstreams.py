"""The gateway's side of streamed gRPC calls (docs/protocol.md, *gRPC streams*).

Once a consumer answers a call by opening a stream, :func:`relay` runs the call to its
end: the client's further request messages go to the consumer as records as they come
(and an END at the client's half-close), the consumer's HEAD becomes the initial
metadata, each message record one response message, and the trailer record the status.
Flow control is end to end: a client that reads slowly keeps ``context.write`` waiting,
so the stream's credit is not renewed and the servicer's writes wait in turn.

Anything that ends the call early - the client cancels or its deadline passes (the task
is cancelled), the consumer aborts, a frame is lost, the peer falls silent - aborts the
stream, so the other side stops too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import grpc.aio

from narun.protocol import grpcstream
from narun.protocol.grpcstream import RecordReader
from narun.protocol.grpcwire import GRPCStatus, GRPCWireError, StatusCode
from narun.protocol.stream import (
    ABORT_BAD_PEER,
    ABORT_CLIENT_GONE,
    ABORT_IDLE,
    Frame,
    StreamError,
)
from narun.transport.stream import StreamChannel

__all__ = ["relay"]

logger = logging.getLogger(__name__)

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]
_Context = grpc.aio.ServicerContext[bytes, bytes]


def _failed(exc: StreamError) -> GRPCStatus:
    if exc.code == ABORT_IDLE:
        return GRPCStatus(StatusCode.UNAVAILABLE, "Backend service stopped answering")
    return GRPCStatus(StatusCode.UNAVAILABLE, "Stream from backend service failed")


async def relay(
    channel: StreamChannel,
    context: _Context,
    *,
    pending: list[bytes],
    more: asyncio.Future[Any] | None,
    send_initial: Any,
) -> GRPCStatus:
    """Run a streamed call to its end; return the status to end the client's call with.

    ``pending`` are request messages already read from the client and not yet sent;
    ``more`` a read of the client's next message that is under way (None: the client
    has half-closed). ``send_initial(metadata)`` sends the initial metadata to the
    client.
    """
    pump = asyncio.get_running_loop().create_task(_pump(channel, context, pending, more))
    try:
        status = await _responses(channel, context, send_initial)
        channel.close()  # the consumer has ended its side; request messages left are moot
        return status
    except StreamError as exc:
        logger.warning("streamed gRPC call ended early: %s", exc)
        return _failed(exc)
    finally:
        pump.cancel()
        if not channel.done:
            # The client went away, its deadline passed, or the reply was bad.
            await channel.abort(ABORT_CLIENT_GONE, "client call ended")


async def _pump(
    channel: StreamChannel,
    context: _Context,
    pending: list[bytes],
    more: asyncio.Future[Any] | None,
) -> None:
    try:
        for message in pending:
            await channel.write(grpcstream.encode_record(message))
        if more is not None:
            message = await more
            while message is not _EOF:
                await channel.write(grpcstream.encode_record(message))
                message = await context.read()
        await channel.end()
    except StreamError:
        pass  # the reader reports it
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the client's stream failed: grpc ends the call itself
        logger.debug("reading the client's messages failed: %r", exc)
        await channel.abort(ABORT_CLIENT_GONE, "client stream failed")


async def _responses(channel: StreamChannel, context: _Context, send_initial: Any) -> GRPCStatus:
    head = await channel.wait_head()
    if not isinstance(head, Frame):
        raise StreamError(ABORT_BAD_PEER, "a single message after the stream opened")
    try:
        initial = grpcstream.decode_head(head.data)
    except GRPCWireError as exc:
        await channel.abort(ABORT_BAD_PEER, "bad head")
        raise StreamError(ABORT_BAD_PEER, f"bad head: {exc}") from None
    await send_initial(initial)
    reader = RecordReader()
    status: GRPCStatus | None = None
    while True:
        chunk = await channel.read()
        if chunk is None:
            break
        try:
            records = reader.feed(chunk)
        except GRPCWireError as exc:
            await channel.abort(ABORT_BAD_PEER, "bad record")
            raise StreamError(ABORT_BAD_PEER, str(exc)) from None
        for flags, data in records:
            if status is not None:
                await channel.abort(ABORT_BAD_PEER, "record after the trailer")
                raise StreamError(ABORT_BAD_PEER, "record after the trailer")
            if flags == grpcstream.TRAILER:
                try:
                    status = grpcstream.decode_trailer(data)
                except GRPCWireError as exc:
                    await channel.abort(ABORT_BAD_PEER, "bad trailer")
                    raise StreamError(ABORT_BAD_PEER, f"bad trailer: {exc}") from None
            else:
                await context.write(data)
    if status is None or reader.pending:
        raise StreamError(ABORT_BAD_PEER, "stream ended without a status")
    return status
