"""The node runner's Prometheus metrics (Go narun's ``narun_node_runner_*`` names)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """Per-instance series on a registry of the node's own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        """Served on ``/metrics``."""
        labels = ["app_name", "instance_id", "node_id"]
        run = [*labels, "run_id"]
        self.up = Gauge(
            "narun_node_runner_instance_up",
            "1 while the run is up (started and not exited), else 0.",
            run,
            registry=self.registry,
        )
        self.restarts = Counter(
            "narun_node_runner_instance_restarts_total",
            "Automatic restarts of the logical instance.",
            labels,
            registry=self.registry,
        )
        self.info = Gauge(
            "narun_node_runner_instance_info",
            "Always 1: what a run is (version, status).",
            [*run, "version", "status"],
            registry=self.registry,
        )
        self.last_exit_code = Gauge(
            "narun_node_runner_instance_last_exit_code",
            "Exit code of the run (negative: the signal that ended it).",
            run,
            registry=self.registry,
        )
        self._info_labels: dict[str, tuple[str, ...]] = {}

    def record(
        self,
        *,
        app: str,
        instance: str,
        node: str,
        run_id: str,
        version: str,
        status: str,
        exit_code: int | None,
        restarted: bool,
    ) -> None:
        """Update the series of one run after a status change."""
        run = (app, instance, node, run_id)
        self.up.labels(*run).set(1 if status in ("starting", "running") else 0)
        if restarted:
            self.restarts.labels(app, instance, node).inc()
        if exit_code is not None:
            self.last_exit_code.labels(*run).set(exit_code)
        old = self._info_labels.pop(run_id, None)
        if old is not None:
            self.info.remove(*old)
        if status in ("stopped", "failed"):
            # an ended run: drop its series (Go keeps them forever, see docs/node.md)
            for gauge in (self.up, self.last_exit_code):
                with contextlib.suppress(KeyError):
                    gauge.remove(*run)
            return
        labels = (*run, version, status)
        self.info.labels(*labels).set(1)
        self._info_labels[run_id] = labels
