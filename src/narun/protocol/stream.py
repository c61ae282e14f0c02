"""Stream frames and the state of one stream end, as pure code (docs/protocol.md, *Streams*).

A stream carries bodies that do not fit in one NATS message, or that are produced over
time, as numbered frames with credit-based flow control. This module encodes and decodes
frames (:func:`encode`, :func:`decode`) and keeps the bookkeeping of one end of a stream
(:class:`StreamState`): sequence numbers each way, credit given and taken, ends and
aborts. It does no I/O and reads no clock: the transport feeds it frames and asks it
what to send; timeouts are the transport's.

Core NATS delivers at most once, so the state refuses any frame whose sequence number is
not the next one (loss, duplicate, reorder) and any DATA beyond the credit it granted:
the body either arrives whole and in order, or the stream aborts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from narun.errors import NarunError

__all__ = [
    "ABORT_BAD_PEER",
    "ABORT_CLIENT_GONE",
    "ABORT_IDLE",
    "ABORT_INTERNAL",
    "ABORT_TOO_LARGE",
    "DEFAULT_IDLE_MS",
    "FIN",
    "FRAME_HEADER",
    "MAX_FRAME_DATA",
    "MAX_SEQ",
    "WINDOW",
    "Frame",
    "Kind",
    "StreamError",
    "StreamState",
    "data_header",
    "decode",
    "encode",
    "encode_data",
    "frame_data_size",
]

FRAME_HEADER: Final = 5
"""Bytes before a frame's body: kind (1) and sequence number (4)."""
MAX_SEQ: Final = 2**32 - 1
"""Largest sequence number; a stream that would need more aborts."""
WINDOW: Final = 1024 * 1024
"""Credit our peers grant per direction: at most this much body in flight or buffered."""
MAX_FRAME_DATA: Final = 256 * 1024
"""Most body bytes our peers put in one DATA frame."""
DEFAULT_IDLE_MS: Final = 30_000
"""Stream idle timeout when the request does not say (``Narun-Stream-Idle-Ms``)."""
FIN: Final = 0x01
"""HEAD flag: the response is complete in the head."""
MAX_REASON: Final = 200
"""Most bytes of an ABORT reason."""

ABORT_CLIENT_GONE: Final = 499
"""Abort code: the HTTP client went away."""
ABORT_INTERNAL: Final = 500
"""Abort code: the application failed."""
ABORT_BAD_PEER: Final = 502
"""Abort code: protocol error or failure of the peer."""
ABORT_IDLE: Final = 504
"""Abort code: nothing arrived from the peer within the idle timeout."""
ABORT_TOO_LARGE: Final = 413
"""Abort code: the body passed the allowed size."""

_HEAD = struct.Struct(">BI")
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")


class Kind(IntEnum):
    """Frame kinds (the first byte of a frame)."""

    HEAD = 0x00
    DATA = 0x01
    END = 0x02
    ABORT = 0x03
    CREDIT = 0x04
    HEARTBEAT = 0x05


class StreamError(NarunError):
    """A stream ended badly: a protocol error, the peer aborted, or it fell silent.

    ``code`` is the abort code (an HTTP status number, see docs/protocol.md); the message
    is for logs only.
    """

    http_status = 502
    grpc_code = "UNAVAILABLE"
    public_message = "Stream from backend service failed"

    def __init__(self, code: int, reason: str, *, remote: bool = False) -> None:
        super().__init__(f"stream aborted ({code}): {reason}")
        self.code = code
        self.reason = reason
        self.remote = remote
        """True when the peer sent the abort; False when this end decided it."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame."""

    kind: Kind
    seq: int
    data: bytes = b""
    """DATA: the body bytes; HEAD: the Binary HTTP response; ABORT: the UTF-8 reason."""
    value: int = 0
    """CREDIT: the offset; ABORT: the code; HEAD: the flags."""


def encode_data(seq: int, data: bytes) -> bytes:
    """A DATA frame (the hot path: no :class:`Frame` object)."""
    return _HEAD.pack(Kind.DATA, seq) + data


def data_header(seq: int) -> bytes:
    """The first :data:`FRAME_HEADER` bytes of DATA frame ``seq`` (its body follows)."""
    return _HEAD.pack(Kind.DATA, seq)


def encode(frame: Frame) -> bytes:
    """The NATS payload of ``frame``."""
    head = _HEAD.pack(frame.kind, frame.seq)
    kind = frame.kind
    if kind is Kind.DATA:
        return head + frame.data
    if kind is Kind.HEAD:
        return head + bytes((frame.value,)) + frame.data
    if kind is Kind.ABORT:
        reason = frame.data[:MAX_REASON]
        while reason:  # never cut a UTF-8 sequence in two
            try:
                reason.decode()
                break
            except UnicodeDecodeError:
                reason = reason[:-1]
        return head + _U16.pack(frame.value) + reason
    if kind is Kind.CREDIT:
        return head + _U64.pack(frame.value)
    return head


def decode(payload: bytes) -> Frame:
    """Parse one frame; raise :class:`StreamError` (code 502) if it is malformed."""
    if len(payload) < FRAME_HEADER:
        raise StreamError(ABORT_BAD_PEER, f"frame of {len(payload)} bytes is too short")
    raw_kind, seq = _HEAD.unpack_from(payload)
    body = payload[FRAME_HEADER:]
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise StreamError(ABORT_BAD_PEER, f"unknown frame kind {raw_kind:#04x}") from None
    if kind is Kind.DATA:
        if not body:
            raise StreamError(ABORT_BAD_PEER, "empty DATA frame")
        return Frame(kind, seq, body)
    if kind is Kind.HEAD:
        if not body or body[0] & ~FIN:
            raise StreamError(ABORT_BAD_PEER, "HEAD frame without valid flags")
        return Frame(kind, seq, body[1:], body[0])
    if kind is Kind.ABORT:
        if len(body) < 2 or len(body) > 2 + MAX_REASON:
            raise StreamError(ABORT_BAD_PEER, "ABORT frame of a wrong size")
        reason = body[2:]
        try:
            reason.decode()
        except UnicodeDecodeError:
            raise StreamError(ABORT_BAD_PEER, "ABORT reason is not UTF-8") from None
        return Frame(kind, seq, reason, _U16.unpack_from(body)[0])
    if kind is Kind.CREDIT:
        if len(body) != 8:
            raise StreamError(ABORT_BAD_PEER, "CREDIT frame of a wrong size")
        return Frame(kind, seq, value=_U64.unpack(body)[0])
    if body:
        raise StreamError(ABORT_BAD_PEER, f"{kind.name} frame with a body")
    return Frame(kind, seq)


def frame_data_size(max_payload: int, overhead: int = 1024) -> int:
    """Body bytes per DATA frame for a server's ``max_payload``.

    :data:`MAX_FRAME_DATA`, or less when ``max_payload`` minus ``overhead`` (room for the
    frame header and NATS headers) is smaller; at least 1.
    """
    return max(1, min(MAX_FRAME_DATA, max_payload - overhead))


class StreamState:
    """The bookkeeping of one end of a stream (both directions).

    ``is_gateway`` says which end: the gateway's first frame out is number 1 (the
    request was 0) and it receives the HEAD; the consumer's first frame out is number 0.
    ``body_streamed`` says whether the request body follows as frames (else it came
    whole in the request). ``window`` is the credit this end grants for the body it
    receives; ``peer_credit`` the initial credit the peer granted for the body this end
    sends.

    Receiving: :meth:`receive` checks a frame and returns it for the transport to act on,
    or None for a frame that arrives after the stream is over. :meth:`consumed` records
    body bytes handed to the application and returns a credit offset to send, if due.
    Sending: :meth:`next_seq` numbers every outgoing frame, :meth:`sendable` says how
    many body bytes the credit allows now, :meth:`sent_data` records them.
    """

    __slots__ = (
        "_grant_step",
        "abort_error",
        "consumed_bytes",
        "credit",
        "granted",
        "head_received",
        "in_ended",
        "is_gateway",
        "out_ended",
        "received",
        "recv_seq",
        "send_seq",
        "sent",
        "window",
    )

    def __init__(
        self,
        *,
        is_gateway: bool,
        body_streamed: bool = False,
        window: int = WINDOW,
        peer_credit: int = 0,
    ) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.is_gateway = is_gateway
        self.window = window
        self._grant_step = max(1, window // 2)
        self.send_seq = 1 if is_gateway else 0
        self.recv_seq = 0 if is_gateway else 1
        self.credit = peer_credit
        """Offset up to which this end may send DATA bytes."""
        self.sent = 0
        """DATA bytes sent."""
        self.granted = window
        """Offset up to which the peer may send DATA bytes."""
        self.received = 0
        """DATA bytes received."""
        self.consumed_bytes = 0
        """DATA bytes the application has taken."""
        self.head_received = not is_gateway
        self.in_ended = not (is_gateway or body_streamed)
        """The peer's body is complete (END, or HEAD with FIN)."""
        self.out_ended = is_gateway and not body_streamed
        """This end's body is complete."""
        self.abort_error: StreamError | None = None
        """Why the stream was aborted, once it was."""

    @property
    def closed(self) -> bool:
        """The stream is over: aborted, or both bodies ended."""
        return self.abort_error is not None or (self.in_ended and self.out_ended)

    def next_seq(self) -> int:
        """The sequence number of the next outgoing frame (and count it)."""
        seq = self.send_seq
        if seq > MAX_SEQ:
            raise self.fail(ABORT_BAD_PEER, "sequence numbers exhausted")
        self.send_seq = seq + 1
        return seq

    def sendable(self) -> int:
        """DATA bytes the credit allows right now."""
        return max(0, self.credit - self.sent)

    def sent_data(self, size: int) -> None:
        """Record ``size`` DATA bytes sent; they must be within :meth:`sendable`."""
        if size > self.credit - self.sent:
            raise ValueError(f"{size} bytes sent beyond the credit")
        self.sent += size

    def end_out(self) -> None:
        """Record that this end's body is complete (an END or a HEAD with FIN was sent)."""
        self.out_ended = True

    def fail(self, code: int, reason: str, *, remote: bool = False) -> StreamError:
        """Abort the stream (the first reason stays) and return the error to raise."""
        if self.abort_error is None:
            self.abort_error = StreamError(code, reason, remote=remote)
        return self.abort_error

    def receive(self, frame: Frame) -> Frame | None:
        """Check ``frame`` against the stream; return it to act on, None to drop it.

        Raises :class:`StreamError` (and aborts the stream) on a protocol error, and for
        an ABORT from the peer (``remote`` set). Frames after the end or abort are None.
        """
        if self.abort_error is not None or (self.in_ended and self.out_ended):
            return None  # late: after the stream is over
        if frame.seq != self.recv_seq:
            what = "duplicate or reordered" if frame.seq < self.recv_seq else "missing"
            raise self.fail(
                ABORT_BAD_PEER,
                f"frame {frame.seq} where {self.recv_seq} was expected ({what} frame)",
            )
        self.recv_seq += 1
        kind = frame.kind
        if kind is Kind.ABORT:
            raise self.fail(frame.value, frame.data.decode(), remote=True)
        if kind is Kind.HEARTBEAT:
            return frame
        if kind is Kind.CREDIT:
            if frame.value < self.credit:
                raise self.fail(ABORT_BAD_PEER, "credit went down")
            self.credit = frame.value
            return frame
        if self.in_ended:
            raise self.fail(ABORT_BAD_PEER, f"{kind.name} after the end of the body")
        if kind is Kind.HEAD:
            if not self.is_gateway or self.head_received:
                raise self.fail(ABORT_BAD_PEER, "unexpected HEAD frame")
            self.head_received = True
            if frame.value & FIN:
                self.in_ended = True
            return frame
        if not self.head_received:
            raise self.fail(ABORT_BAD_PEER, f"{kind.name} before the HEAD")
        if kind is Kind.DATA:
            received = self.received + len(frame.data)
            if received > self.granted:
                raise self.fail(ABORT_BAD_PEER, "DATA beyond the credit granted")
            self.received = received
            return frame
        # END
        self.in_ended = True
        return frame

    def consumed(self, size: int) -> int | None:
        """Record ``size`` body bytes taken by the application.

        Returns the new credit offset to send when half the window has been taken
        since the last grant, else None. Nothing is granted once the body has ended.
        """
        self.consumed_bytes += size
        if self.in_ended or self.abort_error is not None:
            return None
        if self.granted - self.consumed_bytes <= self.window - self._grant_step:
            self.granted = self.consumed_bytes + self.window
            return self.granted
        return None
