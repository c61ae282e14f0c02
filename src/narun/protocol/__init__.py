"""The wire, as pure code: bytes in, values out; no sockets, no event loop.

Binary HTTP (RFC 9292), gRPC status and metadata, NATS header names and message framing,
the NATS Micro (ADR-32) documents, forwarded-header parsing, the short text answers
narun makes itself. Imports nothing from narun but :mod:`narun.errors` (and the ASGI
type aliases of :mod:`narun._types`).
"""
