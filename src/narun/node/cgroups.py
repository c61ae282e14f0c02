"""Memory and CPU limits of one instance through cgroups, v2 or v1, whichever has the controller.

A machine may mount cgroup v2 (``/sys/fs/cgroup`` or ``/sys/fs/cgroup/unified``), v1
hierarchies (``/sys/fs/cgroup/memory``, ``/sys/fs/cgroup/cpu``...), or both with each
controller bound to one of them. For each controller an instance needs, :func:`create`
takes the v2 tree if the controller is enabled there, else the v1 hierarchy that has it,
and makes ``narun-<name>`` below the node's own cgroup (or below ``parent``). Where no
hierarchy has it, :class:`CgroupError` says what was looked at: a limit is never dropped
silently.

The instance joins the groups itself (the launcher writes its pid to each
:attr:`Cgroups.procs_files` before it execs the program). After the exit,
:meth:`Cgroups.oom_killed` tells whether the kernel's OOM killer ended it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from narun.errors import NarunError

__all__ = ["CgroupError", "Cgroups", "Hierarchy", "Limits", "create", "hierarchies"]

CPU_PERIOD_US = 100_000


class CgroupError(NarunError):
    """A limit cannot be applied on this machine; the message says why and where."""


@dataclass(frozen=True)
class Limits:
    """What an instance may use."""

    memory_low: int | None = None
    """Soft limit, bytes (v2 ``memory.low``, v1 ``memory.soft_limit_in_bytes``)."""
    memory_max: int | None = None
    """Hard limit, bytes (v2 ``memory.max``, v1 ``memory.limit_in_bytes``): over it, OOM kill."""
    cpu_cores: float | None = None
    """CPU time per wall time (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""

    @property
    def wants_memory(self) -> bool:
        """Whether a memory controller is needed."""
        return self.memory_low is not None or self.memory_max is not None


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy and this process's cgroup in it."""

    version: int
    """1 or 2."""
    mount: Path
    """Where it is mounted."""
    controllers: frozenset[str]
    """v1: the controllers bound to it; v2: those enabled in our cgroup's parent tree."""
    own: Path
    """This process's cgroup directory in it."""


def _mounts(mountinfo: str) -> list[tuple[str, str, str, str]]:
    """``(root, mount point, fs type, super options)`` of every cgroup mount."""
    out = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
            out.append((fields[3], fields[4].replace("\\040", " "), rest[0], rest[2]))
    return out


def hierarchies(mountinfo: str | None = None, self_cgroup: str | None = None) -> list[Hierarchy]:
    """The cgroup hierarchies this process sees (from ``/proc/self/{mountinfo,cgroup}``)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    if self_cgroup is None:
        self_cgroup = Path("/proc/self/cgroup").read_text()
    paths_v1: dict[str, str] = {}
    path_v2 = None
    for line in self_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if hid == "0" and names == "":
            path_v2 = path
        else:
            for name in names.split(","):
                paths_v1[name] = path
    out = []
    for root, point, fstype, options in _mounts(mountinfo):
        if fstype == "cgroup2":
            if path_v2 is None:
                continue
            own = Path(point) / os.path.relpath(path_v2, root).removeprefix(".")
            own = Path(os.path.normpath(own))
            try:
                enabled = frozenset((own / "cgroup.controllers").read_text().split())
            except OSError:
                enabled = frozenset()
            out.append(Hierarchy(2, Path(point), enabled, own))
        else:
            bound = frozenset(o for o in options.split(",") if o in _V1_CONTROLLERS)
            mine = next((paths_v1[n] for n in bound if n in paths_v1), None)
            if mine is None:
                continue
            own = Path(os.path.normpath(Path(point) / os.path.relpath(mine, root)))
            out.append(Hierarchy(1, Path(point), bound, own))
    return out


_V1_CONTROLLERS = frozenset({"memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "io"})


def _pick(found: list[Hierarchy], controller: str) -> Hierarchy:
    v2 = [h for h in found if h.version == 2 and controller in h.controllers]
    v1 = [h for h in found if h.version == 1 and controller in h.controllers]
    if v2:
        return v2[0]
    if v1:
        return v1[0]
    seen = ", ".join(
        f"v{h.version} at {h.mount} ({' '.join(sorted(h.controllers)) or 'no controllers'})"
        for h in found
    )
    raise CgroupError(
        f"no cgroup hierarchy has the {controller} controller (seen: {seen or 'none mounted'})"
    )


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


@dataclass
class Cgroups:
    """The cgroups of one instance run."""

    dirs: dict[str, Path] = field(default_factory=dict)
    """Controller -> the group's directory."""
    versions: dict[str, int] = field(default_factory=dict)
    """Controller -> 1 or 2."""

    @property
    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files the launcher writes its pid to (each group once)."""
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def oom_killed(self) -> bool:
        """Whether the OOM killer killed a process of the group."""
        d = self.dirs.get("memory")
        if d is None:
            return False
        name = "memory.events" if self.versions["memory"] == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (d / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        return False

    def memory_bytes(self) -> int | None:
        """Memory the group uses now (None without a memory group)."""
        d = self.dirs.get("memory")
        if d is None:
            return None
        name = "memory.current" if self.versions["memory"] == 2 else "memory.usage_in_bytes"
        try:
            return int((d / name).read_text())
        except (OSError, ValueError):
            return None

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the groups (once their processes are gone; retried up to ``timeout``)."""
        deadline = time.monotonic() + timeout
        for d in sorted(set(self.dirs.values())):
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)


def create(
    name: str,
    limits: Limits,
    *,
    parent: str | None = None,
    found: list[Hierarchy] | None = None,
) -> Cgroups:
    """Make ``narun-<name>`` in the hierarchy of each needed controller and set the limits.

    ``parent`` (Go's ``cgroupParent``) puts the groups below that cgroup instead of the
    node's own: relative to the hierarchy's mount, or absolute.
    """
    found = hierarchies() if found is None else found
    wanted = (["memory"] if limits.wants_memory else []) + (
        ["cpu"] if limits.cpu_cores is not None else []
    )
    groups = Cgroups()
    try:
        for controller in wanted:
            h = _pick(found, controller)
            base = h.own
            if parent:
                base = Path(parent) if os.path.isabs(parent) else h.mount / parent
            d = base / f"narun-{name}"
            if h.version == 2:
                control = base / "cgroup.subtree_control"
                try:
                    control.write_text(f"+{controller}")
                except OSError as exc:
                    hint = (
                        " (the cgroup has processes of its own; give cgroupParent, a cgroup "
                        "without processes)"
                        if exc.errno == errno.EBUSY
                        else ""
                    )
                    raise CgroupError(
                        f"cannot enable {controller} for child cgroups in {control}: "
                        f"{exc.strerror}{hint}"
                    ) from None
            try:
                d.mkdir(exist_ok=True)
            except OSError as exc:
                raise CgroupError(f"cannot create the cgroup {d}: {exc.strerror}") from None
            groups.dirs[controller] = d
            groups.versions[controller] = h.version
            _apply(controller, h.version, d, limits)
    except CgroupError:
        groups.remove(timeout=0)
        raise
    return groups


def _apply(controller: str, version: int, d: Path, limits: Limits) -> None:
    if controller == "memory":
        if version == 2:
            if limits.memory_low is not None:
                _write(d / "memory.low", str(limits.memory_low))
            if limits.memory_max is not None:
                _write(d / "memory.max", str(limits.memory_max))
                if (d / "memory.swap.max").exists():
                    _write(d / "memory.swap.max", "0")
        else:
            if limits.memory_max is not None:
                _write(d / "memory.limit_in_bytes", str(limits.memory_max))
                if (d / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                    _write(d / "memory.memsw.limit_in_bytes", str(limits.memory_max))
            if limits.memory_low is not None:
                _write(d / "memory.soft_limit_in_bytes", str(limits.memory_low))
    elif controller == "cpu" and limits.cpu_cores is not None:
        quota = max(int(limits.cpu_cores * CPU_PERIOD_US), 1000)
        if version == 2:
            _write(d / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        else:
            _write(d / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(d / "cpu.cfs_quota_us", str(quota))
