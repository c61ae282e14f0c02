"""The NATS client protocol's message framing, as pure functions.

What nats-py does inside ``Client.publish`` for one message, without its per-call
validation: the header block (``NATS/1.0`` + fields), its size as counted against the
server's ``max_payload``, and the ``HPUB`` command. Used on the hot paths of the gateway's
requests and the consumer's replies.

The other way, :func:`parse_header_block` reads a received header block (an ``HMSG``'s)
into the same map nats-py makes of it, for messages delivered by
:mod:`narun.transport.direct` without a nats-py ``Msg``.
"""

from __future__ import annotations

import re

from narun.errors import NarunError

__all__ = [
    "encode_hpub",
    "encode_pub",
    "header_block",
    "header_size",
    "header_value",
    "parse_header_block",
    "pub_line",
]

# "NATS/1.0\r\n" ... "\r\n": the fixed part of a NATS header block.
_HEADER_OVERHEAD = 12


def header_size(headers: dict[str, str] | None) -> int:
    """Bytes a header map takes on the wire (counts against ``max_payload``)."""
    if not headers:
        return 0
    return _HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items())


# As nats-py: header names are tokens; CR and LF in values become spaces.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NEWLINES = str.maketrans({"\r": " ", "\n": " "})
_valid_names: set[str] = set()
"""Header names already checked (a few constants in practice; capped anyway)."""


def header_block(headers: dict[str, str]) -> bytes:
    """The NATS header block of ``headers``, byte for byte as nats-py writes it.

    Raises :class:`NarunError` for a header name that is not a token.
    """
    parts = ["NATS/1.0\r\n"]
    for key, value in headers.items():
        name = key.strip()
        if not name:
            continue
        if name not in _valid_names:
            if not _TOKEN.fullmatch(name):
                raise NarunError(f"invalid NATS header name {name!r}")
            if len(_valid_names) < 256:
                _valid_names.add(name)
        value = value.strip()
        if "\r" in value or "\n" in value:
            value = value.translate(_NEWLINES)
        parts += (name, ": ", value, "\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


def encode_hpub(subject: str, reply: str, block: bytes, payload: bytes) -> bytes:
    """The ``HPUB`` command for one message with header block ``block``.

    ``subject`` and ``reply`` (may be "") must be valid subjects (no whitespace): they
    are not checked here.
    """
    n = len(block)
    if reply:
        head = f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n".encode()
    else:
        head = f"HPUB {subject} {n} {n + len(payload)}\r\n".encode()
    return b"".join((head, block, payload, b"\r\n"))


def pub_line(subject: str, size: int) -> bytes:
    """The ``PUB`` line (no reply) for a payload of ``size`` bytes that follows it, then
    CR LF: for callers that join the command from parts themselves."""
    return f"PUB {subject} {size}\r\n".encode()


def encode_pub(subject: str, reply: str, payload: bytes) -> bytes:
    """The ``PUB`` command for one message without headers (``reply`` may be "")."""
    if reply:
        head = f"PUB {subject} {reply} {len(payload)}\r\n".encode()
    else:
        head = f"PUB {subject} {len(payload)}\r\n".encode()
    return b"".join((head, payload, b"\r\n"))


_CRLF = b"\r\n"
_STATUS = "Status"
_DESCRIPTION = "Description"
_DERIVED = frozenset((_STATUS, _DESCRIPTION))
_ASCII_SPACE = " \t\n\r\x0b\x0c"
"""What ``bytes.strip()`` strips (``str.strip()`` strips more)."""


def _header_lines(raw: bytes) -> dict[str, str]:
    """``Name: value`` lines as nats-py reads them: the last of a repeated name wins."""
    out: dict[str, str] = {}
    if raw.isascii():  # the common case: one decode, then str operations
        for text in raw.decode("ascii").split("\r\n"):
            left, colon, right = text.partition(":")
            if not colon:
                continue
            field = left.strip(_ASCII_SPACE)
            if field and field.split() != [field]:
                continue
            out[field] = right.strip(_ASCII_SPACE)
        return out
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if key and key.split() != [key]:  # whitespace inside the name (str.isspace's)
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def parse_header_block(raw: bytes) -> tuple[dict[str, str], str, str]:
    """A received NATS header block as ``(headers, status, description)``.

    ``headers`` is the map nats-py gives as ``Msg.headers`` (empty where nats-py gives
    ``None``): an inline status (``NATS/1.0 503``) appears in it as ``Status``, its text
    as ``Description``, as in nats-py; ``status`` and ``description`` are those two
    entries ("" when absent). Of a header sent more than once only the last value is
    kept, as nats-py keeps it. Lines without a colon, names that are not ASCII or hold
    whitespace are skipped; values are stripped and decoded as UTF-8 with replacement.
    Never raises: a block nats-server would not send gives what could be read of it.
    """
    if len(raw) <= 8:
        return {}, "", ""
    if raw[8] != 32:  # "NATS/1.0\r\n": headers only, the common case
        headers = _header_lines(raw[10:])
        return headers, headers.get(_STATUS, ""), headers.get(_DESCRIPTION, "")
    # "NATS/1.0 503\r\n\r\n", "NATS/1.0 100 Idle Heartbeat\r\nName: v\r\n\r\n": the
    # status line is read the way nats-py reads it, so the results stay the same.
    headers = {}
    line = raw[9:]
    code = line[:3].strip().decode("utf-8", "replace")
    if code.isdigit():
        headers[_STATUS] = code
    desc = line[4 : len(line) - 4]
    if desc:
        i = desc.find(_CRLF)
        if i > 0:
            headers[_DESCRIPTION] = desc[:i].decode("utf-8", "replace")
            headers.update(_header_lines(desc[i + 2 :]))
        else:
            headers[_DESCRIPTION] = desc.decode("utf-8", "replace")
    rest = raw[8:]
    rest = rest[rest.find(_CRLF) + 2 :]
    if len(rest) > 2:
        headers.update(_header_lines(raw[10:]))
    return headers, headers.get(_STATUS, ""), headers.get(_DESCRIPTION, "")


def header_value(raw: bytes, name: str) -> str | None:
    """``parse_header_block(raw)[0].get(name)``, without building the map when ``name``
    does not occur in the block at all (the common answer on a hot path)."""
    if not raw or (name not in _DERIVED and name.encode() not in raw):
        return None
    return parse_header_block(raw)[0].get(name)
