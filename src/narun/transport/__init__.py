"""NATS I/O: connecting (auth, TLS), the gateway's request/reply path, an embedded server.

May import :mod:`narun.protocol`, :mod:`narun.errors`; never the gateway or the consumer.
"""
