"""What operators see: logging, metrics, tracing, request ids, the ops HTTP endpoint.

May import ``narun.protocol``, ``narun.config.addr`` and ``narun.errors``.
"""
