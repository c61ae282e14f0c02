"""Pack an app into an artifact: a Python project with all its wheels, or an executable.

A python project becomes a ``tar.gz`` holding the project's files and the wheels of all
its dependencies plus narun's own, resolved together by one ``pip wheel`` on the
deploying machine: a conflict shows at deploy time and a node installs offline. An
executable file is taken as it is, as Go narun stores its binaries. The layout is
:mod:`narun.node.archive`; ``docs/node.md`` ("Artifacts") describes it.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
import uuid
from pathlib import Path, PurePosixPath

from narun.node.archive import (
    IGNORE_FILE,
    MANIFEST_NAME,
    PROJECT_DIR,
    WHEELS_DIR,
    Artifact,
    ArtifactError,
    Manifest,
    is_excluded,
    local_file_name,
    parse_ignore,
    short_digest,
)
from narun.node.command import run
from narun.node.installer import file_digest
from narun.node.selfwheel import build_self_wheel

__all__ = ["pack"]


_MTIME = 315532800  # 1980-01-01: every archive entry's time, so equal inputs pack alike


def pack(source: Path, *, work_dir: Path) -> Artifact:
    """Pack ``source`` into an artifact under ``work_dir``. Blocking.

    A Python project directory (with a ``pyproject.toml`` that has a ``[project]`` or
    ``[build-system]`` table, or a ``requirements.txt``, or both) becomes a tar.gz holding
    the project and the wheels of all its dependencies and of narun, built or downloaded
    here with pip, so a node installs it offline. An executable file is taken as it is.
    """
    try:
        return _pack(Path(source), work_dir)
    except OSError as exc:
        raise ArtifactError(f"packing {source} failed: {exc}") from exc


def _pack(source: Path, work_dir: Path) -> Artifact:
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
        # Build backends (setuptools, hatchling, flit, ...) stamp wheels with this time
        # instead of now: packing unchanged code again gives the same digest, so nothing
        # new is uploaded or installed.
        env = {"SOURCE_DATE_EPOCH": str(_MTIME), **os.environ}
        run(command, cwd=project, env=env, what=f"resolving the dependencies of {source} with pip")
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
    ignore = source / IGNORE_FILE
    patterns = parse_ignore(ignore.read_text(encoding="utf-8")) if ignore.is_file() else ()
    for root, dirnames, filenames in os.walk(source):
        here = Path(root)
        relative_root = PurePosixPath(here.relative_to(source).as_posix())
        dirnames[:] = sorted(d for d in dirnames if not is_excluded(relative_root / d, patterns))
        for name in [*dirnames, *filenames]:
            relative = relative_root / name
            if is_excluded(relative, patterns):
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
