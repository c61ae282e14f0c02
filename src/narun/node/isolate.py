"""Set up an instance's isolation on this machine and wrap its argv in the launcher.

:func:`prepare_sandbox` checks that the kernel and the node's privileges allow what the
spec asks (Landlock, another user, ``nonet``, read-only mounts, cgroup limits) and answers
a :class:`SandboxError` naming the key and the reason when they do not: a mode never
degrades silently. It creates the cgroups, serves the host side of ``nonet`` ports (a Unix
socket per port, relayed to ``127.0.0.1:<port>``), and returns the argv that starts
:mod:`narun.node.launcher`, which applies the rest inside the new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from narun.errors import NarunError
from narun.node import launcher as launch
from narun.node.cgroups import CgroupError, Cgroups, Limits, create
from narun.node.sandbox import landlock_paths
from narun.node.spec import AppSpec

__all__ = ["Sandbox", "SandboxError", "needs_launcher", "prepare_sandbox"]

logger = logging.getLogger(__name__)

_MiB = 1024 * 1024


class SandboxError(NarunError):
    """The spec asks for isolation this node cannot give; the message says which and why."""


def needs_launcher(spec: AppSpec) -> bool:
    """Whether the instance must start through the launcher."""
    return bool(
        spec.mode == "landlock"
        or spec.mounts
        or spec.nonet is not None
        or spec.user is not None
        or spec.memoryMB is not None
        or spec.memoryMaxMB is not None
        or spec.cpuCores is not None
    )


@dataclass
class Sandbox:
    """What one run holds on the host: its cgroups and ``nonet`` relays."""

    argv: tuple[str, ...]
    """The launcher's argv, ending with the program's."""
    cgroups: Cgroups | None = None
    """The run's cgroups, if it has limits."""
    socket_dir: Path | None = None
    """Where the ``nonet`` relays' Unix sockets are."""
    relays: list[asyncio.Server] = field(default_factory=list)
    """The host side of ``nonet`` ports."""
    metrics_port: int | None = None
    """Host port where the instance's metrics are reachable (``nonet``: relayed)."""

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended (a process of) the run."""
        return self.cgroups is not None and self.cgroups.oom_killed()

    def memory_bytes(self) -> int | None:
        """The run's memory (its cgroup's), if it has a memory cgroup."""
        return self.cgroups.memory_bytes() if self.cgroups is not None else None

    async def close(self) -> None:
        """Stop the relays, remove the cgroups and the socket folder."""
        for server in self.relays:
            server.close()
        self.relays.clear()
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _user(name: str) -> dict[str, object]:
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise SandboxError(f"user: no user {name!r} on this node") from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return {"uid": entry.pw_uid, "gid": entry.pw_gid, "groups": groups, "home": entry.pw_dir}


async def _relay_unix(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> None:
    try:
        up = await asyncio.open_unix_connection(path)
    except OSError:
        writer.close()
        return
    await _pipes(reader, writer, *up)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    try:
        up = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        writer.close()
        return
    await _pipes(reader, writer, *up)


async def _pipes(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def prepare_sandbox(
    spec: AppSpec,
    *,
    name: str,
    argv: tuple[str, ...],
    work_dir: Path,
    env: dict[str, str],
    read_exec: list[str],
    mounted: list[Path],
    metrics_host: str = "127.0.0.1",
) -> Sandbox:
    """Check, create the host side, and build the launcher's argv (``env`` gets ``USER``...)."""
    config: dict[str, object] = {}
    root = os.geteuid() == 0
    linux = sys.platform.startswith("linux")
    sandbox = Sandbox(argv=())
    try:
        if spec.user is not None:
            if not root:
                raise SandboxError(
                    f"user: running as {spec.user!r} needs a node running as root "
                    f"(this one is uid {os.geteuid()})"
                )
            user = _user(spec.user)
            config["user"] = {k: user[k] for k in ("uid", "gid", "groups")}
            env["HOME"] = str(user["home"])
            env["USER"] = env["LOGNAME"] = pwd.getpwuid(int(str(user["uid"]))).pw_name
            os.chown(work_dir, int(str(user["uid"])), int(str(user["gid"])))
        if spec.mounts:
            if root and linux:
                config["read_only"] = [str(p) for p in mounted]
            else:
                logger.warning(
                    "%s: mounted files are read-only by their mode (0444) only: making them "
                    "read-only for the instance's own user needs a node running as root on Linux",
                    name,
                )
        if spec.nonet is not None:
            if not (root and linux):
                raise SandboxError("nonet: an own network namespace needs a root node on Linux")
            sandbox.socket_dir = Path(tempfile.mkdtemp(prefix="narun-net-"))
            os.chmod(sandbox.socket_dir, 0o755)
            ports = []
            for p in spec.nonet.local_ports:
                path = sandbox.socket_dir / f"{p.port}.sock"

                async def handle(
                    r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int = p.port
                ) -> None:
                    await _relay(r, w, port)

                sandbox.relays.append(await asyncio.start_unix_server(handle, path=str(path)))
                os.chmod(path, 0o666)
                ports.append((p.port, str(path)))
            config["nonet"] = ports
            if spec.metrics is not None:
                inside = sandbox.socket_dir / "metrics.sock"
                config["nonet_serve"] = [(str(inside), spec.metrics.port)]

                async def to_metrics(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                    await _relay_unix(r, w, str(inside))

                server = await asyncio.start_server(to_metrics, metrics_host, 0)
                sandbox.relays.append(server)
                sandbox.metrics_port = server.sockets[0].getsockname()[1]
        limits = Limits(
            memory_low=spec.memoryMB * _MiB if spec.memoryMB else None,
            memory_max=(spec.memoryMaxMB or spec.memoryMB or 0) * _MiB or None,
            cpu_cores=spec.cpuCores,
        )
        if limits.wants_memory or limits.cpu_cores is not None:
            if not linux:
                raise SandboxError("memoryMB/cpuCores: cgroups exist on Linux only")
            try:
                sandbox.cgroups = await asyncio.to_thread(
                    create, name, limits, parent=spec.cgroupParent
                )
            except CgroupError as exc:
                key = "memoryMB" if limits.wants_memory else "cpuCores"
                raise SandboxError(f"{key}: {exc}") from None
            config["cgroups"] = sandbox.cgroups.procs_files
        if spec.mode == "landlock":
            abi = launch.landlock_abi()
            if abi < 1:
                raise SandboxError(
                    "mode landlock: this kernel has no Landlock (Linux >= 5.13 with "
                    "landlock in the lsm= list)"
                )
            extra = [*read_exec]
            extra += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            config["landlock"] = landlock_paths(
                spec.landlock,
                work_dir=str(work_dir),
                read_exec=sorted(set(extra)),
                read_only=[str(p) for p in mounted],
            )
    except BaseException:
        await sandbox.close()
        raise
    sandbox.argv = (
        sys.executable,
        "-I",
        launch.__file__,
        json.dumps(config, separators=(",", ":")),
        "--",
        *argv,
    )
    return sandbox
