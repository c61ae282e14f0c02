"""Response header fields that belong to one connection, not to the message.

RFC 9110 section 7.6.1: ``Connection``, the fields it names, and the connection-level
fields (``Keep-Alive``, ``Transfer-Encoding``, ``Upgrade``, ``TE``, ``Trailer``,
``Proxy-*``) describe the hop they came over. An app behind NATS has no connection of
its own to describe, and the gateway's HTTP server frames its own response, so such
fields are dropped where a response enters the Binary HTTP message (consumer) and where
it leaves it (gateway). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HOP_BY_HOP", "end_to_end"]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
"""Connection-level field names (lower case); ``proxy-*`` names are dropped as well."""


def _connection_level(name: bytes) -> bool:
    return name in HOP_BY_HOP or name.startswith(b"proxy-")


def end_to_end(headers: Sequence[tuple[bytes, bytes]]) -> Sequence[tuple[bytes, bytes]]:
    """``headers`` without hop-by-hop fields and without the fields ``Connection`` names.

    Names are compared case-insensitively; the fields kept are returned as given, in
    order (``headers`` itself when there is nothing to drop).
    """
    out = headers
    hop = HOP_BY_HOP
    for name, _ in out:
        lower = name.lower()
        if lower in hop or lower[:6] == b"proxy-":  # inlined: a response's cost
            break
    else:
        return out  # the usual case: nothing to drop, nothing copied twice
    named: set[bytes] = set()
    for name, value in out:
        if name.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b","))
    return [
        (name, value)
        for name, value in out
        if not _connection_level(lower := name.lower()) and lower not in named
    ]
