"""Several gateway processes on one machine, sharing the listen ports (``--workers N``).

One gateway process runs one event loop, so it uses one core. :func:`run_workers` starts
``N`` worker processes; each is a whole gateway (its own NATS connection, HTTP, gRPC and
metrics servers) whose listening sockets are bound with ``SO_REUSEPORT``, so the kernel
spreads new connections over them. Linux only.

The supervisor only starts and stops workers (a :class:`narun.supervise.Group`):

- SIGINT or SIGTERM is passed on to every worker as SIGTERM, and each worker shuts down
  gracefully as a lone gateway does (a second signal forces them, as it does a lone one).
  Workers live in their own process group, so a terminal's Ctrl-C reaches them once, via
  the supervisor, and they get SIGTERM if the supervisor dies.
- A worker that exits on its own (it could not start, or crashed) makes the supervisor
  stop the others and exit with status 1, for the service manager to restart the lot.
- Metrics: the workers keep their counters in ``prometheus_client``'s multiprocess files
  (a temporary directory removed at exit), and whichever worker answers a scrape serves
  the sum over all of them. ``/readyz`` is the answering worker's own readiness.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from typing import Literal

from narun.config.addr import parse_addr
from narun.config.gateway import GatewayConfig
from narun.errors import ConfigError, NarunError
from narun.observe.metrics import MULTIPROC_ENV
from narun.supervise import Child, Group

__all__ = ["run_workers"]

logger = logging.getLogger(__name__)

_BOOT = "from narun.gateway.workers import _worker_main; _worker_main()"


@dataclass(frozen=True)
class _WorkerSpec:
    """What the supervisor hands a worker on its standard input (pickled)."""

    config: GatewayConfig
    graceful_timeout: float
    log_level: str
    log_format: Literal["text", "json"]
    index: int
    supervisor: int
    access_log: bool = True


def run_workers(
    config: GatewayConfig,
    *,
    workers: int,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
    log_format: Literal["text", "json"] = "text",
    access_log: bool = True,
) -> int:
    """Run ``workers`` gateway processes until SIGINT/SIGTERM; return the exit status."""
    if workers < 1:
        raise ConfigError(f"workers: must be at least 1 (got {workers})")
    if not sys.platform.startswith("linux"):
        raise ConfigError("several workers need Linux (SO_REUSEPORT load balancing)")
    if config.grpc_addr and config.grpc_routes:
        # narun.gateway.grpc binds without SO_REUSEPORT (to report a taken port).
        raise ConfigError("several workers do not serve gRPC yet: run one gateway for gRPC")
    for key in ("server_addr", "metrics_addr"):
        addr = getattr(config, key)
        if addr and parse_addr(addr)[1] == 0:
            raise ConfigError(f"{key}: port 0 cannot be shared by several workers ({addr!r})")
    metrics_dir = tempfile.mkdtemp(prefix="narun-metrics-") if config.metrics_addr else None
    env = {MULTIPROC_ENV: metrics_dir} if metrics_dir else {}
    status = 0

    def on_signal(sig: signal.Signals) -> None:
        logger.info("%s received: stopping %d workers", sig.name, workers)

    def on_exit(child: Child) -> None:
        nonlocal status
        if metrics_dir:
            _mark_dead(child.pid, metrics_dir)
        if child.returncode != 0 or child is group.first_exit:
            status = 1
        if child is group.first_exit:
            logger.error("gateway worker %d exited with %d: stopping", child.pid, child.returncode)

    # Workers lead process groups of their own: a terminal's Ctrl-C reaches them once,
    # passed on by the supervisor. Leaving the block kills any still running (only if the
    # supervisor itself failed: supervise() returns once all have exited).
    group = Group(grace=0)
    try:
        with group, group.forward_signals(on_signal=on_signal):
            for index in range(workers):
                if group.stopping:
                    break
                spec = _WorkerSpec(
                    config, graceful_timeout, log_level, log_format, index, os.getpid(), access_log
                )
                group.add(
                    Child.start(
                        [sys.executable, "-c", _BOOT],
                        name=f"gateway worker {index}",
                        env=env,
                        input=pickle.dumps(spec),
                    )
                )
            pids = [child.pid for child in group.children]
            logger.info("started %d gateway workers: pids %s", len(pids), pids)
            group.supervise(on_exit=on_exit)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status


def _mark_dead(pid: int, metrics_dir: str) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]


def _die_with(supervisor: int) -> None:
    """Get SIGTERM when the supervisor dies (Linux); exit now if it already has."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != supervisor:
        sys.exit(1)


def _worker_main() -> None:
    """Entry point of one worker process (see :data:`_BOOT`)."""
    spec: _WorkerSpec = pickle.load(sys.stdin.buffer)
    _die_with(spec.supervisor)
    from narun.observe.log import configure

    configure(
        level=spec.log_level,
        fmt=spec.log_format,
        name=f"gateway[{spec.index}]",
        access_log=spec.access_log,
    )
    import asyncio

    import uvloop

    from narun.gateway.server import serve

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        asyncio.run(serve(spec.config, graceful_timeout=spec.graceful_timeout, reuse_port=True))
    except (NarunError, OSError) as exc:
        logger.error("gateway worker %d cannot run: %s", spec.index, exc)
        sys.exit(1)
