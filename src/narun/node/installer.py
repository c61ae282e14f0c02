"""Install an artifact on a node: one unpacked project and one venv per digest, reused.

Layout under the cache directory, per digest (key = unpadded base64url of the SHA-256):

    <key>/installed.json   written last: its presence means "complete, reuse me"
    <key>/project/         the project's files (the instance's working directory)
    <key>/venv/            the virtualenv (python artifacts)
    <key>/<file>           the program (executable artifacts)
    .<key>.lock            an flock(2) held while installing

A venv cannot be built elsewhere and renamed (scripts carry absolute paths), so installers
of one digest take the lock instead; a half-built folder without ``installed.json`` (its
installer died) is removed and built again by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import platform
import shutil
import sys
import sysconfig
import tarfile
import uuid
import venv
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from narun.node.archive import (
    MANIFEST_NAME,
    PROJECT_DIR,
    WHEELS_DIR,
    ArtifactError,
    ArtifactKind,
    Manifest,
    Member,
    check_members,
    digest_key,
    format_digest,
    local_file_name,
    normalize_digest,
)
from narun.node.binfmt import HEAD_SIZE, executable_platform, go_platform
from narun.node.command import run

__all__ = ["Installed", "file_digest", "install"]

logger = logging.getLogger(__name__)

_MARKER = "installed.json"
# The runner's own interpreter settings must not reach pip or the app's interpreter.
_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONSAFEPATH")


@dataclass(frozen=True)
class Installed:
    """An installed artifact, ready to run."""

    root: Path
    """Unpacked project directory (the instance's working directory)."""
    python: Path | None
    """The venv's python for kind ``python`` (runs ``python -m narun serve ...``)."""
    executable: Path | None
    """The program for kind ``executable``."""


def file_digest(path: Path) -> str:
    """The digest (``SHA-256=...``) of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return format_digest(h.digest())


def install(archive: Path, *, digest: str, kind: ArtifactKind, cache_dir: Path) -> Installed:
    """Install ``archive`` under ``cache_dir`` once per digest and return where it is.

    Python: unpack, then build a venv with ``pip install --no-index --find-links
    <wheels>`` (offline: the wheels, narun's included, come in the archive). Executable:
    copy, mode 0755. An installation of the digest that is already complete is reused
    without reading ``archive``; otherwise ``archive`` must have ``digest``. Concurrent
    installers of one digest (threads or processes) wait for each other. Blocking.
    """
    expected = normalize_digest(digest)
    if kind not in ("python", "executable"):
        raise ArtifactError(f"unknown artifact kind {kind!r} (python or executable)")
    try:
        return _install(archive, expected, kind, cache_dir)
    except OSError as exc:
        raise ArtifactError(f"installing {archive} under {cache_dir} failed: {exc}") from exc


def _install(archive: Path, expected: str, kind: ArtifactKind, cache_dir: Path) -> Installed:
    key = digest_key(expected)
    home = cache_dir / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = _complete(home, kind)
    if found is not None:
        return found
    with _locked(cache_dir / f".{key}.lock"):
        found = _complete(home, kind)
        if found is not None:
            return found
        if home.exists():
            logger.warning("removing the unfinished installation %s", home)
            shutil.rmtree(home)
        if not archive.is_file():
            raise ArtifactError(f"artifact file {archive} does not exist")
        actual = file_digest(archive)
        if actual != expected:
            raise ArtifactError(
                f"artifact file {archive} has digest {actual}, expected {expected}: refused"
            )
        home.mkdir()
        try:
            if kind == "python":
                installed = _install_python(archive, home)
            else:
                installed = _install_executable(archive, home)
            _write_marker(home, kind, expected, installed)
        except BaseException:
            shutil.rmtree(home, ignore_errors=True)
            raise
        return installed


def uninstall(digest: str, *, cache_dir: Path) -> None:
    """Remove the installation of ``digest`` (waiting for an installer of it to finish)."""
    key = digest_key(normalize_digest(digest))
    if not cache_dir.is_dir():
        return
    with _locked(cache_dir / f".{key}.lock"):
        shutil.rmtree(cache_dir / key, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # flock: per open file, so threads of one process exclude each other too; released
    # by the kernel when the holder dies.
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _complete(home: Path, kind: ArtifactKind) -> Installed | None:
    try:
        marker = json.loads((home / _MARKER).read_text())
        found_kind, root = marker["kind"], home / marker["root"]
        python = home / marker["python"] if marker.get("python") else None
        executable = home / marker["executable"] if marker.get("executable") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not there, or not ours: installed again
    if found_kind != kind:
        raise ArtifactError(f"{home} holds this digest installed as {found_kind!r}, not {kind!r}")
    installed = Installed(root=root, python=python, executable=executable)
    program = installed.python or installed.executable
    if program is None or not program.exists():
        return None  # e.g. the base interpreter of the venv was removed: build again
    return installed


def _write_marker(home: Path, kind: ArtifactKind, digest: str, installed: Installed) -> None:
    body = {
        "kind": kind,
        "digest": digest,
        "root": installed.root.relative_to(home).as_posix(),
        "python": installed.python.relative_to(home).as_posix() if installed.python else None,
        "executable": (
            installed.executable.relative_to(home).as_posix() if installed.executable else None
        ),
        "build": uuid.uuid4().hex,
    }
    part = home / f".{_MARKER}.part"
    part.write_text(json.dumps(body, indent=2) + "\n")
    part.replace(home / _MARKER)


def _install_executable(archive: Path, home: Path) -> Installed:
    with archive.open("rb") as f:
        built_for = executable_platform(f.read(HEAD_SIZE))
    here = go_platform(sys.platform, platform.machine())
    if built_for is not None and here[1] is not None and built_for != here:
        raise ArtifactError(
            f"{archive.name} is built for {built_for[0]}/{built_for[1]}; this node is "
            f"{here[0]}/{here[1]}: deploy a build for this platform"
        )
    program = home / local_file_name(archive.name)
    part = home / f".{program.name}.part"
    shutil.copyfile(archive, part)
    part.chmod(0o755)
    part.replace(program)
    return Installed(root=home, python=None, executable=program)


def _install_python(archive: Path, home: Path) -> Installed:
    manifest = _unpack(archive, home)
    wheels = home / WHEELS_DIR
    env_dir = home / "venv"
    use_own_pip = _node_has_pip()
    venv.EnvBuilder(with_pip=not use_own_pip, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # The runner's pip installs into the venv (--python): no pip copy per venv. Without
    # one (a uv-made environment), the venv gets CPython's bundled pip (offline too).
    pip = [sys.executable, "-m", "pip", "--python", str(python)] if use_own_pip else []
    pip = pip or [str(python), "-m", "pip"]
    command = [
        *pip,
        "--isolated",
        "--disable-pip-version-check",
        "install",
        "--no-index",
        "--find-links",
        str(wheels),
        "--no-input",
        "--no-cache-dir",
        *(str(wheels / name) for name in manifest.wheels),
    ]
    try:
        _run(command, cwd=home)
    except ArtifactError as exc:
        here = f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}"
        where = ""
        if (manifest.python, manifest.platform) != (here, sysconfig.get_platform()):
            where = (
                f" (its wheels were built for {manifest.python} on {manifest.platform}; "
                f"this node runs {here} on {sysconfig.get_platform()})"
            )
        raise ArtifactError(f"installing {archive.name} failed{where}: {exc}") from None
    try:
        _run([str(python), "-I", "-c", "import narun"], cwd=home)
    except ArtifactError as exc:
        raise ArtifactError(
            f"narun is not importable in the venv of {archive.name}: {exc}"
        ) from None
    shutil.rmtree(wheels, ignore_errors=True)  # installed; the archive still has them
    return Installed(root=home / PROJECT_DIR, python=python, executable=None)


def _node_has_pip() -> bool:
    """Whether the runner's Python has pip (a uv-made environment may not)."""
    return importlib.util.find_spec("pip") is not None


def _unpack(archive: Path, home: Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            check_members(
                Member(m.name, "file" if m.isreg() else "dir" if m.isdir() else "other")
                for m in members
            )
            f = tar.extractfile(MANIFEST_NAME)
            if f is None:  # pragma: no cover - check_members made sure it is a file
                raise ArtifactError(f"{MANIFEST_NAME} is not a file")
            manifest = Manifest.from_json(f.read())
            check_members(
                (Member(m.name, "file" if m.isreg() else "dir") for m in members),
                wheels=manifest.wheels,
            )
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: also refuse what we missed
                tar.extractall(home, members=members, filter="data")
            else:  # pragma: no cover - older 3.11
                tar.extractall(home, members=members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ArtifactError(f"{archive} is not a readable tar.gz artifact: {exc}") from None
    if not (home / PROJECT_DIR).is_dir():
        (home / PROJECT_DIR).mkdir()
    return manifest


def _run(command: list[str], *, cwd: Path) -> None:
    run(command, cwd=cwd, env={k: v for k, v in os.environ.items() if k not in _DROPPED_ENV})
