"""An instance's isolation as spec keys (Go narun's names) and the launcher's plan (pure).

The models here are the values of the app spec keys ``landlock``, ``mounts``, ``nonet`` and
``metrics``; :func:`landlock_paths` turns a spec into the ``(path, modes)`` list the
launcher (:mod:`narun.node.launcher`) allows. Nothing here touches the system.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from narun.config.fields import fail

__all__ = [
    "SYSTEM_PATHS",
    "LandlockPath",
    "LandlockSpec",
    "LocalPort",
    "MetricsSpec",
    "Mount",
    "MountSource",
    "NonetSpec",
    "landlock_paths",
]

_MODES = re.compile(r"[rwxc]+")
_OBJECT = re.compile(r"[^/\x00]{1,255}")

SYSTEM_PATHS: tuple[tuple[str, str], ...] = (
    ("/usr", "rx"),
    ("/bin", "rx"),
    ("/sbin", "rx"),
    ("/lib", "rx"),
    ("/lib32", "rx"),
    ("/lib64", "rx"),
    ("/etc/ld.so.cache", "r"),
    ("/etc/ld.so.conf", "r"),
    ("/etc/ld.so.conf.d", "r"),
    ("/etc/localtime", "r"),
    ("/etc/passwd", "r"),
    ("/etc/group", "r"),
    ("/etc/nsswitch.conf", "r"),
    ("/proc", "r"),
    ("/dev/null", "rw"),
    ("/dev/zero", "r"),
    ("/dev/urandom", "r"),
    ("/dev/random", "r"),
)
"""What every Landlock-confined instance may use: programs, shared libraries, their config."""

_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "tmp": (("/tmp", "rwc"), ("/dev/shm", "rwc")),
    "dns": (("/etc/resolv.conf", "r"), ("/etc/hosts", "r"), ("/etc/host.conf", "r")),
    "certs": (
        ("/etc/ssl", "r"),
        ("/etc/ca-certificates", "r"),
        ("/usr/share/ca-certificates", "r"),
        ("/etc/pki", "r"),
    ),
    "tty": (("/dev/tty", "rw"), ("/dev/pts", "rw")),
    "vminfo": (("/sys/devices/system/cpu", "r"), ("/sys/fs/cgroup", "r")),
}


def _abs_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        fail("must be an absolute path")
    return posixpath.normpath(value)


def _modes(value: object) -> str:
    if not isinstance(value, str) or not _MODES.fullmatch(value):
        fail("must be letters from 'rwxc' (read, write, execute, create)")
    return "".join(sorted(set(value)))


def _relative(value: object) -> str:
    if not isinstance(value, str) or not value or value.startswith("/"):
        fail("must be a path relative to the instance's work directory")
    norm = posixpath.normpath(value)
    if norm == "." or norm.startswith("..") or "/../" in f"/{norm}/":
        fail("must stay inside the instance's work directory (no '..')")
    return norm


def _object_name(value: object) -> str:
    if not isinstance(value, str) or not _OBJECT.fullmatch(value):
        fail("must be a file name in narun-files (no '/')")
    return value


class LandlockPath(BaseModel):
    """One more path a Landlock-confined instance may use."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Annotated[str, BeforeValidator(_abs_path)]
    """Absolute path (a directory covers everything below it)."""
    modes: Annotated[str, BeforeValidator(_modes)] = "r"
    """``r`` read, ``w`` write, ``x`` execute, ``c`` create/remove inside."""


class LandlockSpec(BaseModel):
    """Go's ``landlock`` key: groups of system paths and custom paths."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tmp: bool = False
    """``/tmp`` and ``/dev/shm``, read-write."""
    dns: bool = False
    """``/etc/resolv.conf``, ``/etc/hosts``: name resolution."""
    certs: bool = False
    """The system's CA certificates."""
    tty: bool = False
    """``/dev/tty`` and ``/dev/pts``."""
    vminfo: bool = False
    """CPU and cgroup information under ``/sys``."""
    shared: bool = True
    """Go's shared-library group; always on here (see :data:`SYSTEM_PATHS`)."""
    stdio: bool = True
    """Go's stdio group; always on (an instance's output is a pipe)."""
    paths: tuple[LandlockPath, ...] = ()
    """More paths with their modes."""


class MountSource(BaseModel):
    """Where a mounted file comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    object_store: Annotated[str, BeforeValidator(_object_name)] = Field(alias="objectStore")
    """A file stored with ``narun files add`` (Object Store ``narun-files``)."""


class Mount(BaseModel):
    """A stored file placed (read-only) in the instance's work directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Annotated[str, BeforeValidator(_relative)]
    """Where, relative to the work directory."""
    source: MountSource
    """Which stored file."""


class LocalPort(BaseModel):
    """A host port reachable from a ``nonet`` instance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: Annotated[int, Field(ge=1025, le=65535)]
    """The port, on 127.0.0.1 both inside and on the host."""
    protocol: Literal["tcp"] = "tcp"
    """Only ``tcp`` (Go also relays ``udp``)."""


class NonetSpec(BaseModel):
    """Go's ``nonet`` key: an own network namespace."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    local_ports: tuple[LocalPort, ...] = Field(default=(), alias="localPorts")
    """Host ports the instance may still reach (on its own 127.0.0.1)."""


class MetricsSpec(BaseModel):
    """Where the instance serves its own Prometheus metrics (for ``/discovery``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: Annotated[int, Field(ge=1, le=65535)]
    """Port on 127.0.0.1."""
    path: str = "/metrics"
    """HTTP path."""


def landlock_paths(
    spec: LandlockSpec,
    *,
    work_dir: str,
    read_exec: Iterable[str],
    read_only: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Every ``(path, modes)`` a confined instance may use.

    ``read_exec``: its program, venv, project and Python; ``read_only``: mounted files.
    """
    out: list[tuple[str, str]] = list(SYSTEM_PATHS)
    for group, paths in _GROUPS.items():
        if getattr(spec, group):
            out += paths
    out.append((work_dir, "rwc"))
    out += [(p, "rx") for p in read_exec]
    out += [(p, "r") for p in read_only]
    out += [(p.path, p.modes) for p in spec.paths]
    seen: set[tuple[str, str]] = set()
    return [x for x in out if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]
