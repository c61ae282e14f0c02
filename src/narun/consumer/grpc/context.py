"""The ``context`` a grpcio servicer gets when narun serves it over NATS.

:class:`SyncContext` implements ``grpc.ServicerContext`` for plain (thread pool)
servicers, :class:`AsyncContext` implements ``grpc.aio.ServicerContext`` for ``async``
ones. Both read the call's metadata, deadline and peer from the request
(:class:`narun.protocol.grpcwire.GRPCRequest`) and record what the servicer decides - status,
details, initial and trailing metadata - for the reply. ``abort`` raises, as grpcio's
does, and marks the call so that swallowing the exception does not undo it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

import grpc
import grpc.aio

from narun.protocol import grpcwire
from narun.protocol.grpcwire import GRPCRequest, GRPCStatus, Metadata, Metadatum, StatusCode

__all__ = ["AsyncContext", "CallContext", "SyncContext", "status_code"]

logger = logging.getLogger(__name__)


def status_code(code: object) -> StatusCode:
    """Our :class:`StatusCode` for a ``grpc.StatusCode`` or an int; ``ValueError`` otherwise."""
    if isinstance(code, grpc.StatusCode):
        return StatusCode[code.name]
    if isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 16:
        return StatusCode(code)
    raise ValueError(f"not a gRPC status code: {code!r}")


def _metadata(items: Iterable[tuple[str, str | bytes]]) -> Metadata:
    out: list[Metadatum] = []
    for item in items:
        key, value = item
        if not isinstance(key, str) or not isinstance(value, str | bytes):
            raise TypeError(f"metadata items are (str, str | bytes) pairs, got {item!r}")
        out.append(Metadatum(key.lower(), value))
    grpcwire.encode_metadata(out)  # validates the keys
    return tuple(out)


class SyncAbort(Exception):
    """Raised by :meth:`SyncContext.abort` (grpcio raises a bare ``Exception``)."""


class AsyncAbort(grpc.aio.AbortError):
    """Raised by :meth:`AsyncContext.abort`; a ``grpc.aio.AbortError`` like grpcio's."""


class CallContext:
    """The state of one call that both kinds of servicer context share."""

    def __init__(self, request: GRPCRequest, *, started: float | None = None) -> None:
        self.request = request
        start = time.monotonic() if started is None else started
        self._deadline = None if request.timeout is None else start + request.timeout
        self._code: StatusCode | None = None
        self._details: str | None = None
        self._initial: Metadata | None = None
        self._trailing: Metadata = ()
        self._aborted = False
        self._cancelled = False
        self._finished = False
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- what the servicer reads ------------------------------------------------------

    def invocation_metadata(self) -> Metadata:
        """The client's metadata (``-bin`` values as bytes), forwarded by the gateway."""
        return self.request.metadata

    def time_remaining(self) -> float | None:
        """Seconds left before the call's deadline; ``None`` if it has none."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        """False once the call ended, was cancelled or ran past its deadline."""
        if self._finished or self._cancelled:
            return False
        remaining = self.time_remaining()
        return remaining is None or remaining > 0

    def peer(self) -> str:
        """The client as grpcio names peers (``ipv4:127.0.0.1:51234``), or ``unknown``."""
        return grpcwire.peer_from_address(self.request.client_addr)

    def peer_identities(self) -> Iterable[bytes] | None:
        """Always ``None``: the gateway does not forward client certificates."""
        return None

    def peer_identity_key(self) -> str | None:
        """Always ``None`` (no authenticated peer identity)."""
        return None

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        """Always empty (no transport security properties cross NATS)."""
        return {}

    # -- what the servicer decides ----------------------------------------------------

    def set_code(self, code: grpc.StatusCode) -> None:
        """Set the status the call ends with (used if the servicer returns normally)."""
        self._code = status_code(code)

    def set_details(self, details: str) -> None:
        """Set the status message."""
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        """The status code set so far, or ``None``."""
        return None if self._code is None else grpc.StatusCode[self._code.name]

    def details(self) -> str | None:
        """The status message set so far, or ``None``."""
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Metadata sent to the client with the status."""
        self._trailing = _metadata(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        """The trailing metadata set so far."""
        return self._trailing

    def _send_initial(self, initial_metadata: Iterable[tuple[str, str | bytes]]) -> None:
        if self._initial is not None:
            raise ValueError("Initial metadata no longer allowed!")
        self._initial = _metadata(initial_metadata)

    def take_initial(self) -> Metadata:
        """The initial metadata to send now; ``send_initial_metadata`` fails after this."""
        if self._initial is None:
            self._initial = ()
        return self._initial

    def _mark_abort(
        self, code: object, details: str, trailing: Iterable[tuple[str, str | bytes]] | None
    ) -> None:
        number = status_code(code)
        if number == StatusCode.OK:
            logger.error("abort() called with StatusCode.OK; returning UNKNOWN")
            number, details = StatusCode.UNKNOWN, ""
        if trailing is not None:
            self._trailing = _metadata(trailing)
        self._code, self._details, self._aborted = number, details, True

    def _aborted_with(self) -> str:
        return grpcwire.code_name(self._code or StatusCode.UNKNOWN)

    def set_compression(self, compression: grpc.Compression) -> None:
        """Accepted and ignored: NATS messages are not compressed per call."""

    def disable_next_message_compression(self) -> None:
        """Accepted and ignored."""

    def _cancel(self) -> None:
        if not self._finished and not self._aborted:
            self._cancelled = True

    # -- used by the endpoint ---------------------------------------------------------

    @property
    def aborted(self) -> bool:
        """True once ``abort`` was called (even if the servicer caught the exception)."""
        return self._aborted

    def status(
        self, default_code: StatusCode = StatusCode.OK, default_details: str = ""
    ) -> GRPCStatus:
        """The call's outcome: the code and details the servicer set, else the defaults."""
        if self._cancelled and not self._aborted:
            code, details = StatusCode.CANCELLED, "Cancelled"
        else:
            code = default_code if self._code is None else self._code
            details = default_details if self._details is None else self._details
        return GRPCStatus(
            code=code,
            message=details if code != StatusCode.OK else "",
            initial_metadata=self._initial or (),
            trailing_metadata=self._trailing,
        )

    def finish(self) -> None:
        """Mark the call ended and run the registered callbacks (errors are logged)."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("gRPC call callback failed")

    def _add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._finished:
                return False
            self._callbacks.append(callback)
            return True


class SyncContext(CallContext, grpc.ServicerContext):  # type: ignore[misc]
    """``grpc.ServicerContext`` for servicers that run on the consumer's thread pool."""

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        """End the call with ``code`` and ``details`` now (raises)."""
        self._mark_abort(code, details, None)
        raise SyncAbort(f"call aborted with {self._aborted_with()}")

    def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """End the call with a ``grpc.Status`` (code, details, trailing metadata)."""
        self._mark_abort(status.code, status.details, status.trailing_metadata)
        raise SyncAbort(f"call aborted with {self._aborted_with()}")

    def send_initial_metadata(self, initial_metadata: Iterable[tuple[str, str | bytes]]) -> None:
        """Metadata sent to the client before the response; at most once."""
        self._send_initial(initial_metadata)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Run ``callback()`` when the call ends; False if it already has."""
        return self._add_callback(callback)

    def cancel(self) -> None:
        """End the call as CANCELLED once the servicer returns."""
        self._cancel()


class AsyncContext(CallContext, grpc.aio.ServicerContext[Any, Any]):  # type: ignore[misc]
    """``grpc.aio.ServicerContext`` for ``async def`` servicers."""

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> NoReturn:
        """End the call with ``code``, ``details`` and trailing metadata now (raises)."""
        self._mark_abort(code, details, trailing_metadata or None)
        raise AsyncAbort(f"call aborted with {self._aborted_with()}")

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """End the call with a ``grpc.Status`` (code, details, trailing metadata)."""
        self._mark_abort(status.code, status.details, status.trailing_metadata)
        raise AsyncAbort(f"call aborted with {self._aborted_with()}")

    async def send_initial_metadata(
        self, initial_metadata: Iterable[tuple[str, str | bytes]]
    ) -> None:
        """Metadata sent to the client before the response; at most once."""
        self._send_initial(initial_metadata)

    async def read(self) -> Any:
        """Not available: narun serves unary calls, whose request is the argument."""
        raise RuntimeError("read() is only for streaming calls; narun serves unary calls")

    async def write(self, message: Any) -> None:
        """Not available: narun serves unary calls, whose response is the return value."""
        raise RuntimeError("write() is only for streaming calls; narun serves unary calls")

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """Run ``callback(context)`` when the call ends."""
        if not self._add_callback(lambda: callback(self)):
            callback(self)

    def cancelled(self) -> bool:
        """True if the call ran past its deadline (the gateway gave up) or was cancelled."""
        return self._cancelled or (not self._finished and not self.is_active())

    def done(self) -> bool:
        """True once the call has ended."""
        return self._finished
