"""Who sent a request, behind zero or more reverse proxies: pure header logic.

The gateway believes ``X-Forwarded-For``, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``
only when the connection comes straight from a trusted proxy. From anybody else those
headers (and the other forwarding headers in :data:`FORWARDING_HEADERS`) are dropped,
because a client can write whatever it likes in them.

:func:`resolve` takes the request's header fields, the direct peer and the scheme of the
connection, and returns the header fields to forward plus the :class:`Origin`: the
client address, scheme and host the backend should see. No I/O, no event loop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "FORWARDING_HEADERS",
    "Origin",
    "TrustedProxies",
    "connection_options",
    "header_bytes",
    "resolve",
]

Headers: TypeAlias = Sequence[tuple[bytes, bytes]]
_Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

XFF = b"x-forwarded-for"
XFP = b"x-forwarded-proto"
XFH = b"x-forwarded-host"

FORWARDING_HEADERS = frozenset(
    {
        b"forwarded",
        XFF,
        XFP,
        XFH,
        b"x-forwarded-port",
        b"x-forwarded-prefix",
        b"x-real-ip",
    }
)
"""Header fields that describe the client as a proxy saw it. Kept only from trusted peers."""

# A ``Connection`` option may never remove these: the request needs them.
_PROTECTED = frozenset({b"host"})
_SCHEMES = frozenset({"http", "https"})
# An authority (RFC 3986 host[:port]): no spaces, no '/', '?', '#', '@' or ','.
_AUTHORITY = re.compile(r"[A-Za-z0-9._~!$&'()*+;=:\[\]%-]{1,255}")


class TrustedProxies:
    """The addresses and networks whose forwarding headers are believed.

    Entries are IP addresses (``127.0.0.1``, ``::1``) or CIDR networks
    (``10.0.0.0/8``, ``fd00::/8``). Empty: nobody is trusted.
    """

    __slots__ = ("_networks", "entries")

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries = tuple(entries)
        """The entries as given."""
        self._networks = tuple(parse_network(e) for e in self.entries)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: object) -> bool:
        if not self._networks:
            return False
        ip = address if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address) else None
        if ip is None and isinstance(address, str):
            ip = _parse_ip(address)
        if ip is None:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({list(self.entries)!r})"


def parse_network(entry: str) -> _Network:
    """``"10.0.0.0/8"`` or ``"127.0.0.1"`` as a network; ``ValueError`` if it is neither."""
    text = entry.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_network(text, strict=False)


@dataclass(frozen=True, slots=True)
class Origin:
    """The request's origin as the backend should see it."""

    client: tuple[str, int] | None
    """Client address and port; port 0 when it came from ``X-Forwarded-For``."""
    scheme: str
    """``http`` or ``https``: what the client spoke to the first trusted hop."""
    host: bytes | None
    """The ``Host`` the client asked for (``None`` if it sent none)."""


def header_bytes(headers: Headers) -> int:
    """Size of the header fields as on an HTTP/1.1 wire: name, ``": "``, value, CRLF."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


def connection_options(headers: Headers) -> frozenset[bytes]:
    """Field names listed in ``Connection`` (RFC 9110 section 7.6.1), lower-cased.

    A proxy must not forward them. ``Host`` is never listed as removable.
    """
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            names.update(t.strip().lower() for t in value.split(b","))
    names.discard(b"")
    return frozenset(names - _PROTECTED)


def _parse_ip(text: str) -> _Address | None:
    """An address from an ``X-Forwarded-For`` entry: ``a.b.c.d``, ``a.b.c.d:port``,
    ``v6``, ``[v6]`` or ``[v6]:port``. ``None`` for anything else (``unknown``, names)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and not text[end + 1 :].startswith(":")):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _first_value(values: list[bytes]) -> str | None:
    """First comma-separated element of a (possibly repeated) field, stripped."""
    if not values:
        return None
    first = values[0].split(b",", 1)[0].strip()
    return first.decode("latin-1") if first else None


def resolve(
    headers: Headers,
    *,
    peer: tuple[str, int] | None,
    scheme: str,
    trusted: TrustedProxies,
) -> tuple[list[tuple[bytes, bytes]], Origin]:
    """Decide the request's origin and the header fields to forward.

    - Fields named in ``Connection`` are removed.
    - ``peer`` in ``trusted``: the client is the rightmost ``X-Forwarded-For`` entry that
      is not itself a trusted proxy (the leftmost if all are); ``X-Forwarded-Proto`` and
      ``X-Forwarded-Host`` (first value) become the scheme and ``Host``; other forwarding
      fields are passed on.
    - Otherwise every field in :data:`FORWARDING_HEADERS` is dropped and the peer is the
      client.

    The result always carries one ``X-Forwarded-For`` (the trusted chain plus the peer),
    one ``X-Forwarded-Proto`` and, when a host is known, one ``X-Forwarded-Host``.
    """
    hop = connection_options(headers)
    peer_trusted = peer is not None and peer[0] in trusted
    out: list[tuple[bytes, bytes]] = []
    xff: list[bytes] = []
    xfp: list[bytes] = []
    xfh: list[bytes] = []
    host: bytes | None = None
    host_at = -1
    for name, value in headers:
        if name in hop:
            continue
        if name in FORWARDING_HEADERS:
            if not peer_trusted:
                continue
            if name == XFF:
                xff.append(value)
                continue
            if name == XFP:
                xfp.append(value)
                continue
            if name == XFH:
                xfh.append(value)
                continue
        elif name == b"host":
            if host is not None:
                continue  # a second Host is dropped; the first decides
            host, host_at = value, len(out)
        out.append((name, value))

    client = peer
    origin_scheme = scheme
    chain = b", ".join(v.strip() for v in xff if v.strip())
    if peer_trusted:
        entries = [e for e in chain.decode("latin-1").split(",") if e.strip()]
        client_ip: _Address | None = None
        for entry in reversed(entries):
            ip = _parse_ip(entry)
            if ip is None:
                break  # garbage: believe only the hops to its right
            client_ip = ip
            if ip not in trusted:
                break
        if client_ip is not None:
            client = (str(client_ip), 0)
        proto = _first_value(xfp)
        if proto is not None and proto.lower() in _SCHEMES:
            origin_scheme = proto.lower()
        fwd_host = _first_value(xfh)
        if fwd_host is not None and _AUTHORITY.fullmatch(fwd_host):
            host = fwd_host.encode("latin-1")
            if host_at >= 0:
                out[host_at] = (b"host", host)
            else:
                out.insert(0, (b"host", host))
    if peer is not None:
        peer_text = peer[0].encode("latin-1")
        out.append((XFF, chain + b", " + peer_text if chain else peer_text))
    out.append((XFP, origin_scheme.encode("latin-1")))
    if host is not None:
        out.append((XFH, host))
    return out, Origin(client=client, scheme=origin_scheme, host=host)
