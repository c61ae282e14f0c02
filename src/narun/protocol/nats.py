"""The NATS client protocol's message framing, as pure functions.

What nats-py does inside ``Client.publish`` for one message, without its per-call
validation: the header block (``NATS/1.0`` + fields), its size as counted against the
server's ``max_payload``, and the ``HPUB`` command. Used on the hot paths of the gateway's
requests and the consumer's replies.
"""

from __future__ import annotations

import re

from narun.errors import NarunError

__all__ = ["encode_hpub", "header_block", "header_size"]

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

    ``subject`` and ``reply`` must be valid subjects (no whitespace): they are not
    checked here.
    """
    n = len(block)
    head = f"HPUB {subject} {reply} {n} {n + len(payload)}\r\n".encode()
    return b"".join((head, block, payload, b"\r\n"))
