"""A wheel of the narun that is running, so an artifact can carry it to nodes.

narun is not installed from a package index on nodes (a package of that name on PyPI is
someone else's); each python artifact carries the deploying machine's narun as a wheel,
built here from the imported package and its installed metadata. That works the same for
a regular install and an editable (source) install, needs no build backend and no
network, and is pure Python (narun has no compiled modules).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import zipfile
from pathlib import Path

import narun
from narun.node.archive import ArtifactError

__all__ = ["build_self_wheel"]

_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: stable wheels for equal code
# Metadata fields a wheel carries over from the installed distribution (core metadata).
_KEPT_FIELDS = ("Summary", "Requires-Python", "Provides-Extra", "Requires-Dist")


def build_self_wheel(dest_dir: Path) -> Path:
    """Write ``narun-<version>-py3-none-any.whl`` of the running narun into ``dest_dir``.

    Its files are the imported ``narun`` package (without bytecode); its metadata
    (version, dependencies, extras, the ``narun`` command) is the installed one.
    """
    package = Path(narun.__file__).resolve().parent
    try:
        dist = importlib.metadata.distribution("narun")
    except importlib.metadata.PackageNotFoundError:
        raise ArtifactError(
            "narun's package metadata is missing (run narun from an installation, "
            "e.g. pip install -e <source>): cannot bundle narun into the artifact"
        ) from None
    version = dist.version
    if not re.fullmatch(r"[A-Za-z0-9.+!_-]+", version):
        raise ArtifactError(f"narun's installed version {version!r} cannot name a wheel")
    version = version.replace("-", "_")
    files: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        if path.suffix in {".so", ".pyd"}:
            raise ArtifactError(
                f"narun has a compiled module ({relative}); only a pure-Python narun "
                "can be bundled into an artifact"
            )
        files.append((f"narun/{relative.as_posix()}", path.read_bytes()))

    info = f"narun-{version}.dist-info"
    metadata = ["Metadata-Version: 2.1", "Name: narun", f"Version: {dist.version}"]
    for field in _KEPT_FIELDS:
        metadata.extend(f"{field}: {value}" for value in dist.metadata.get_all(field) or [])
    files.append((f"{info}/METADATA", ("\n".join(metadata) + "\n").encode()))
    wheel_text = "Wheel-Version: 1.0\nGenerator: narun\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files.append((f"{info}/WHEEL", wheel_text.encode()))
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))
    record = [
        f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for name, data in files
    ]
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))

    dest_dir.mkdir(parents=True, exist_ok=True)
    wheel = dest_dir / f"narun-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=_DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return wheel


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
