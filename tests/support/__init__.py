"""What the tests share: real processes, the apps they serve, test credentials.

- :mod:`~tests.support.procs`: start ``narun gateway`` / ``narun serve`` processes on
  loopback (built on :mod:`narun.supervise`), free ports, unique service names.
- :mod:`~tests.support.stack`: :class:`~tests.support.stack.Processes`, one e2e stack's
  processes, all stopped (and checked to exit 0) when its block ends, however it ends.
- :mod:`~tests.support.spans`: narun's tracing on for a test, the spans kept in memory.
- :mod:`~tests.support.apps`, :mod:`~tests.support.grpc_apps`: the ASGI, WSGI and gRPC
  apps the e2e tests serve (``narun serve tests.support.apps:asgi_app``).
- :mod:`~tests.support.natsauth`: NKeys, JWT chains and TLS files made on the spot.
- :mod:`~tests.support.traffic`: steady request streams, every outcome counted.

The helpers of :mod:`~tests.support.procs` are importable from here too.
"""

from tests.support.procs import (
    ROOT,
    Proc,
    count_instances,
    free_port,
    gateway_to_responder,
    start_consumer,
    start_gateway,
    stopped_on_error,
    unique_service,
    wait_for_port,
    write_config,
)
from tests.support.stack import Processes

__all__ = [
    "ROOT",
    "Proc",
    "Processes",
    "count_instances",
    "free_port",
    "gateway_to_responder",
    "start_consumer",
    "start_gateway",
    "stopped_on_error",
    "unique_service",
    "wait_for_port",
    "write_config",
]
