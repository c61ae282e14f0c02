"""Serving an ASGI or WSGI app as a NATS Micro service (endpoint ``handler``)."""
