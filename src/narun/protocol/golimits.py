"""What a Go narun consumer's Binary HTTP decoder accepts in a request's control data.

Go narun's consumer decodes requests with the openpcc/bhttp library, which refuses a
``:method`` or ``:scheme`` over 64 bytes, an ``:authority`` over 256 bytes or with a
byte that is not valid in a ``Host`` header, and a ``:path`` over 4096 bytes. It then
answers an ADR-32 400 error, which a gateway can only pass on as a 502. A gateway that
may be talking to Go consumers checks these limits before publishing and answers the
client itself: 414 for the path, 400 for the rest. Pure, no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from narun.errors import BadRequest, URITooLong
from narun.protocol.bhttp import Request

__all__ = ["MAX_AUTHORITY", "MAX_METHOD", "MAX_PATH", "MAX_SCHEME", "check_request"]

MAX_METHOD: Final = 64
"""Longest ``:method`` in bytes."""
MAX_SCHEME: Final = 64
"""Longest ``:scheme`` in bytes."""
MAX_AUTHORITY: Final = 256
"""Longest ``:authority`` in bytes."""
MAX_PATH: Final = 4096
"""Longest ``:path`` (path and query) in bytes."""

# The bytes Go's net/http allows in a Host header (httpguts.ValidHostHeader): letters,
# digits and these. Anything else (a space, '/', '@', '"', a control or non-ASCII byte)
# makes the Go decoder refuse the request.
_HOST: Final = re.compile(r"[A-Za-z0-9!$%&'()*+,\-.:;=\[\]_~]*")


def check_request(request: Request) -> None:
    """Raise :class:`URITooLong` or :class:`BadRequest` if a Go consumer would refuse it."""
    if len(request.path) > MAX_PATH:  # one character per byte
        raise URITooLong(f":path of {len(request.path)} bytes > {MAX_PATH} (Go consumers)")
    if len(request.method) > MAX_METHOD:
        raise BadRequest(f":method of {len(request.method)} bytes > {MAX_METHOD} (Go consumers)")
    if len(request.scheme) > MAX_SCHEME:
        raise BadRequest(f":scheme of {len(request.scheme)} bytes > {MAX_SCHEME} (Go consumers)")
    authority = request.authority
    if len(authority) > MAX_AUTHORITY:
        raise BadRequest(f":authority of {len(authority)} bytes > {MAX_AUTHORITY} (Go consumers)")
    if _HOST.fullmatch(authority) is None:
        raise BadRequest(f":authority {authority!r} is not a valid host for Go consumers")
