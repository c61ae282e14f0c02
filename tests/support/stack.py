"""One e2e stack's processes: started through it, all stopped when its block ends."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.procs import Proc, start_consumer, start_gateway


class Processes:
    """The narun processes of one test stack. Use as a context manager.

    When the block ends, however it ends, they are all stopped newest first (gateways
    before the consumers they forward to, if started in that order), and each must have
    exited 0: a graceful drain on SIGTERM (``check=False`` for stacks whose tests kill
    their processes on purpose). If the block raised, they are stopped without that
    check, so that the first error is the one reported.
    """

    def __init__(self, logs: Path, nats_url: str, *, check: bool = True) -> None:
        self.logs = logs
        """Where the processes' log files go."""
        self.nats_url = nats_url
        self.check = check
        """Whether a normal end asserts that every process exited 0."""
        self.procs: list[Proc] = []
        """Every process started or added so far, oldest first."""

    def consumer(self, app_ref: str, service: str, *extra: str, **options: Any) -> Proc:
        """:func:`~tests.support.procs.start_consumer` on this stack's NATS."""
        return self.add(
            start_consumer(self.logs, self.nats_url, app_ref, service, *extra, **options)
        )

    def gateway(self, routes: list[dict[str, Any]], **settings: Any) -> tuple[Proc, str]:
        """:func:`~tests.support.procs.start_gateway` on this stack's NATS."""
        proc, url = start_gateway(self.logs, self.nats_url, routes, **settings)
        return self.add(proc), url

    def add(self, proc: Proc) -> Proc:
        """Make ``proc`` (started elsewhere) one of the stack's processes."""
        self.procs.append(proc)
        return proc

    def stop(self) -> list[tuple[Proc, int]]:
        """Stop every process, newest first; each with its exit status.

        A stop that fails or is interrupted does not spare the others: they are all
        stopped, then the first such error goes on.
        """
        stopped = []
        error: BaseException | None = None
        while self.procs:
            proc = self.procs.pop()
            try:
                stopped.append((proc, proc.stop()))
            except BaseException as exc:  # raised again once all are stopped
                error = error or exc
        if error is not None:
            raise error
        return stopped

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stopped = self.stop()
        if exc_type is None and self.check:
            failures = [
                f"{proc.child.name} (pid {proc.pid}) exited with {code}:\n{proc.output()}"
                for proc, code in stopped
                if code != 0
            ]
            assert not failures, "\n\n".join(failures)
