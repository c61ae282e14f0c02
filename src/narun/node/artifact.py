"""Artifacts: pack an app, store it in the NATS Object Store, fetch it, install it.

``narun deploy`` calls :func:`pack` and :func:`upload`; a node calls :func:`download` and
:func:`install` (in :mod:`narun.node.installer`). The format (archive layout, digest,
object names, metadata) is in :mod:`narun.node.archive` and ``docs/node.md``.

A python project becomes a ``tar.gz`` holding the project's files and the wheels of all
its dependencies plus narun's own (resolved together by pip on the deploying machine, so
a conflict shows at deploy time and a node installs offline). An executable file is
stored as it is, as Go narun stores its binaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import logging
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.api
import nats.js.errors

from narun.node.archive import (
    MANIFEST_NAME,
    PROJECT_DIR,
    WHEELS_DIR,
    ArtifactError,
    ArtifactKind,
    Manifest,
    digest_key,
    is_excluded,
    local_file_name,
    normalize_digest,
    object_headers,
    object_name,
    short_digest,
)
from narun.node.installer import Installed, file_digest, install
from narun.node.selfwheel import build_self_wheel

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.object_store import ObjectStore

__all__ = [
    "ARTIFACT_BUCKET",
    "Artifact",
    "ArtifactError",
    "Installed",
    "download",
    "file_digest",
    "install",
    "pack",
    "upload",
]

logger = logging.getLogger(__name__)

ARTIFACT_BUCKET = "app-binaries"
"""JetStream Object Store bucket of artifacts (Go narun's name)."""

_MTIME = 315532800  # 1980-01-01: every archive entry's time, so equal inputs pack alike
_PIP_TAIL = 3000  # characters of pip's output quoted in an error


@dataclass(frozen=True)
class Artifact:
    """A packed artifact on the local disk, ready to upload."""

    path: Path
    """The local packed file (a ``.tar.gz`` for python, the executable itself otherwise)."""
    digest: str
    """``SHA-256=`` + base64url of the file's SHA-256, as the Object Store writes it."""
    kind: ArtifactKind
    """``python`` (a project with its wheels) or ``executable`` (one program file)."""
    size: int
    """Size of :attr:`path` in bytes."""


# -- pack -------------------------------------------------------------------------------


def pack(source: Path, *, work_dir: Path) -> Artifact:
    """Pack ``source`` into an artifact under ``work_dir``. Blocking.

    A Python project directory (with a ``pyproject.toml`` that has a ``[project]`` or
    ``[build-system]`` table, or a ``requirements.txt``, or both) becomes a tar.gz holding
    the project and the wheels of all its dependencies and of narun, built or downloaded
    here with pip, so a node installs it offline. An executable file is taken as it is.
    """
    source = Path(source)
    if source.is_dir():
        return _pack_python(source, work_dir)
    if source.is_file():
        if not os.access(source, os.X_OK):
            raise ArtifactError(
                f"{source}: a file to deploy must be executable (chmod +x); "
                "a Python app is deployed as its project directory"
            )
        work_dir.mkdir(parents=True, exist_ok=True)
        target = work_dir / source.name
        if not (target.exists() and target.samefile(source)):
            tmp = work_dir / f".{source.name}.{uuid.uuid4().hex}.part"
            shutil.copyfile(source, tmp)
            tmp.chmod(0o755)
            tmp.replace(target)
        return Artifact(
            path=target,
            digest=file_digest(target),
            kind="executable",
            size=target.stat().st_size,
        )
    raise ArtifactError(f"{source}: no such file or directory")


def _build_inputs(source: Path) -> tuple[bool, bool]:
    """(build the project with pip, install its requirements.txt)."""
    buildable = False
    pyproject = source / "pyproject.toml"
    if pyproject.is_file():
        try:
            table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{pyproject}: not valid TOML: {exc}") from None
        buildable = "project" in table or "build-system" in table
    requirements = (source / "requirements.txt").is_file()
    if not (buildable or requirements):
        raise ArtifactError(
            f"{source}: not a Python project: it needs a pyproject.toml with a [project] "
            "table or a requirements.txt"
        )
    return buildable, requirements


def _pack_python(source: Path, work_dir: Path) -> Artifact:
    buildable, requirements = _build_inputs(source)
    work_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".pack-", dir=work_dir))
    try:
        project = stage / PROJECT_DIR
        dirs, files = _copy_project(source, project)
        narun_wheel = build_self_wheel(stage / "self")
        wheels = stage / WHEELS_DIR
        wheels.mkdir()
        command = [sys.executable, "-m", "pip", "wheel", "--no-input", "--wheel-dir", str(wheels)]
        if requirements:
            command += ["--requirement", str(project / "requirements.txt")]
        if buildable:
            command.append(str(project))
        command.append(str(narun_wheel))
        # pip builds a local project in place (build/, *.egg-info): it writes into the
        # staged copy, never into the user's directory, and only `files` are archived.
        _run(command, cwd=project, what=f"resolving the dependencies of {source} with pip")
        wheel_names = tuple(sorted(p.name for p in wheels.glob("*.whl")))
        if narun_wheel.name not in wheel_names:
            raise ArtifactError(f"pip did not keep narun's wheel {narun_wheel.name}")
        manifest = Manifest(
            wheels=wheel_names,
            narun_version=narun_wheel.name.split("-")[1],
            python=f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
            platform=sysconfig.get_platform(),
        )
        packed = stage / "artifact.tar.gz"
        _write_archive(packed, manifest, project, dirs, files, wheels)
        digest = file_digest(packed)
        target = (
            work_dir / f"{local_file_name(source.resolve().name)}-{short_digest(digest)}.tar.gz"
        )
        packed.replace(target)
        return Artifact(path=target, digest=digest, kind="python", size=target.stat().st_size)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _copy_project(source: Path, dest: Path) -> tuple[list[str], list[str]]:
    """Copy the project's files (without excluded ones) to ``dest``; their relative paths."""
    dirs: list[str] = []
    files: list[str] = []
    for root, dirnames, filenames in os.walk(source):
        here = Path(root)
        relative_root = PurePosixPath(here.relative_to(source).as_posix())
        dirnames[:] = sorted(d for d in dirnames if not is_excluded(relative_root / d))
        for name in [*dirnames, *filenames]:
            relative = relative_root / name
            if is_excluded(relative):
                continue
            path = here / name
            if path.is_symlink():
                raise ArtifactError(
                    f"{path}: symbolic links are not packed; replace it by the file, "
                    "or move it out of the project"
                )
            if path.is_dir():
                dirs.append(relative.as_posix())
                (dest / relative).mkdir(parents=True, exist_ok=True)
            elif path.is_file():
                files.append(relative.as_posix())
                (dest / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / relative)
            else:
                raise ArtifactError(f"{path}: not a regular file or folder")
    dest.mkdir(parents=True, exist_ok=True)
    return sorted(dirs), sorted(files)


def _write_archive(
    target: Path,
    manifest: Manifest,
    project: Path,
    dirs: list[str],
    files: list[str],
    wheels: Path,
) -> None:
    """Write the tar.gz: entries sorted, times, owners and modes normalized."""

    def entry(
        name: str, *, size: int = 0, mode: int = 0o644, folder: bool = False
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = _MTIME
        info.mode = 0o755 if folder else mode
        info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        data = manifest.to_json()
        tar.addfile(entry(MANIFEST_NAME, size=len(data)), io.BytesIO(data))
        tar.addfile(entry(PROJECT_DIR, folder=True))
        for name in dirs:
            tar.addfile(entry(f"{PROJECT_DIR}/{name}", folder=True))
        for name in files:
            path = project / name
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            info = entry(
                f"{PROJECT_DIR}/{name}",
                size=path.stat().st_size,
                mode=0o755 if executable else 0o644,
            )
            with path.open("rb") as f:
                tar.addfile(info, f)
        tar.addfile(entry(WHEELS_DIR, folder=True))
        for name in manifest.wheels:
            path = wheels / name
            with path.open("rb") as f:
                tar.addfile(entry(f"{WHEELS_DIR}/{name}", size=path.stat().st_size), f)


def _run(command: list[str], *, cwd: Path, what: str) -> None:
    """Run a pip command; a failure raises :class:`ArtifactError` with pip's last words."""
    logger.debug("running %s", command)
    proc = subprocess.run(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if proc.returncode != 0:
        output = proc.stdout.decode(errors="replace").strip()
        raise ArtifactError(f"{what} failed (exit {proc.returncode}):\n{output[-_PIP_TAIL:]}")


# -- store and fetch ------------------------------------------------------------------------


async def _bucket(js: JetStreamContext, *, create: bool) -> ObjectStore:
    try:
        return await js.object_store(ARTIFACT_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            raise ArtifactError(
                f"Object Store bucket {ARTIFACT_BUCKET!r} does not exist: nothing was deployed"
            ) from None
    except nats.js.errors.ServiceUnavailableError:
        raise ArtifactError(_NO_JETSTREAM) from None
    except nats.errors.NoRespondersError:
        raise ArtifactError(_NO_JETSTREAM) from None
    try:
        return await js.create_object_store(ARTIFACT_BUCKET)
    except nats.js.errors.BadRequestError:
        # Created by someone else in between (with another config): use theirs.
        return await js.object_store(ARTIFACT_BUCKET)


_NO_JETSTREAM = "JetStream is not enabled on the NATS server (start it with --jetstream)"


def _nats_failure(what: str, exc: BaseException) -> ArtifactError:
    detail = str(exc) or type(exc).__name__
    return ArtifactError(f"{what}: {detail}")


async def upload(js: JetStreamContext, artifact: Artifact, *, name: str) -> str:
    """Store ``artifact`` in :data:`ARTIFACT_BUCKET` (created if missing).

    The object name is ``<name>-<16 hex digits of the digest>`` (returned). An object of
    that name with the same digest is kept as it is (no second upload). Metadata records
    the app name, digest, kind, original file name and, for python, where it was built.
    """
    oname = object_name(name, artifact.digest)
    digest = normalize_digest(artifact.digest)
    try:
        store = await _bucket(js, create=True)
        try:
            existing = await store.get_info(oname)
        except nats.js.errors.ObjectNotFoundError:
            existing = None
        if existing is not None and _same_digest(existing.digest, digest):
            logger.debug("artifact %s is already stored", oname)
            return oname
        manifest = (
            await asyncio.to_thread(_read_manifest, artifact.path)
            if artifact.kind == "python"
            else None
        )
        meta = nats.js.api.ObjectMeta(
            name=oname,
            description=f"narun {artifact.kind} artifact of {name}",
            headers=object_headers(
                name=name,
                digest=digest,
                kind=artifact.kind,
                original_file=artifact.path.name,
                manifest=manifest,
            ),
        )
        f = await asyncio.to_thread(artifact.path.open, "rb")
        try:
            info = await store.put(oname, f, meta=meta)
        finally:
            f.close()
        if not _same_digest(info.digest, digest):
            await store.delete(oname)
            raise ArtifactError(
                f"{artifact.path} changed after it was packed (stored {info.digest}, "
                f"packed {digest}); pack it again"
            )
    except (TimeoutError, nats.errors.Error) as exc:
        raise _nats_failure(f"storing {oname} in bucket {ARTIFACT_BUCKET!r} failed", exc) from exc
    return oname


def _read_manifest(path: Path) -> Manifest:
    with tarfile.open(path, "r:gz") as tar:
        member = tar.getmember(MANIFEST_NAME)
        f = tar.extractfile(member)
        if f is None:
            raise ArtifactError(f"{path}: {MANIFEST_NAME} is not a file")
        return Manifest.from_json(f.read())


def _same_digest(stored: str | None, expected: str) -> bool:
    if not stored:
        return False
    try:
        return normalize_digest(stored) == expected
    except ArtifactError:
        return False


async def download(js: JetStreamContext, object_name: str, *, dest_dir: Path, digest: str) -> Path:
    """Fetch an artifact into ``dest_dir/<digest key>/`` and return its path.

    A file already there with the right digest is reused (no second download); one with
    another digest is fetched again. The object's stored digest must equal ``digest``
    and so must the bytes received; otherwise :class:`ArtifactError`, and the bad file
    is deleted.
    """
    expected = normalize_digest(digest)
    folder = dest_dir / digest_key(expected)
    target = folder / local_file_name(object_name)
    if target.is_file():
        if await asyncio.to_thread(file_digest, target) == expected:
            return target
        logger.warning("cached artifact %s has another digest: fetching it again", target)
        target.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{target.name}.{uuid.uuid4().hex}.part"
    try:
        store = await _bucket(js, create=False)
        try:
            info = await store.get_info(object_name)
        except nats.js.errors.ObjectNotFoundError:
            raise ArtifactError(
                f"artifact {object_name!r} is not in bucket {ARTIFACT_BUCKET!r}"
            ) from None
        if not _same_digest(info.digest, expected):
            raise ArtifactError(
                f"artifact {object_name!r} has digest {info.digest}, the spec wants "
                f"{expected}: refused"
            )
        f = await asyncio.to_thread(part.open, "wb")
        try:
            await store.get(object_name, writeinto=f)
            await asyncio.to_thread(_flush, f)
        finally:
            f.close()
        got = await asyncio.to_thread(file_digest, part)
        if got != expected:
            raise ArtifactError(
                f"artifact {object_name!r} arrived with digest {got}, expected {expected}: "
                "refused and deleted"
            )
        part.replace(target)
    except nats.js.errors.DigestMismatchError:
        raise ArtifactError(
            f"artifact {object_name!r}: the bytes received do not match the stored digest "
            "(corrupted or tampered object): refused and deleted"
        ) from None
    except (TimeoutError, nats.errors.Error) as exc:
        raise _nats_failure(
            f"fetching {object_name!r} from {ARTIFACT_BUCKET!r} failed", exc
        ) from exc
    finally:
        part.unlink(missing_ok=True)
    return target


def _flush(f: Any) -> None:
    f.flush()
    with contextlib.suppress(OSError):
        os.fsync(f.fileno())
