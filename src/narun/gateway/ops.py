"""The gateway's operations endpoints: :mod:`narun.ops`, under its former name."""

from narun.ops import NATSState, OpsApp, OpsServer, ReadyCheck, nats_readiness

__all__ = ["NATSState", "OpsApp", "OpsServer", "ReadyCheck", "nats_readiness"]
