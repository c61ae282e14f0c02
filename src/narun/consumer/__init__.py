"""Serve ASGI and WSGI apps as NATS Micro services.

>>> from narun.consumer import run
>>> run(app, service="hello", nats_url="nats://localhost:4222")  # doctest: +SKIP
"""

from narun.consumer.server import Consumer, Interface, detect_interface, run

__all__ = ["Consumer", "Interface", "detect_interface", "run"]
