"""The artifact format as pure functions: digests, object names, the manifest, member rules.

An artifact is what ``narun deploy`` stores and a node installs. Nothing here touches a
file or a socket; :mod:`narun.node.artifact` does the I/O around these rules, and
``docs/node.md`` (section "Artifacts") is their prose form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Literal

from narun.errors import NarunError

__all__ = [
    "DIGEST_PREFIX",
    "FORMAT_VERSION",
    "IGNORE_FILE",
    "MANIFEST_NAME",
    "PROJECT_DIR",
    "WHEELS_DIR",
    "Artifact",
    "ArtifactError",
    "ArtifactKind",
    "Manifest",
    "Member",
    "check_members",
    "check_name",
    "digest_key",
    "format_digest",
    "is_excluded",
    "local_file_name",
    "normalize_digest",
    "object_headers",
    "object_name",
    "parse_ignore",
    "short_digest",
]

ArtifactKind = Literal["python", "executable"]

DIGEST_PREFIX = "SHA-256="
"""Prefix of a digest, as the NATS Object Store writes it (``SHA-256=`` + base64url)."""
FORMAT_VERSION = 1
"""Version of the python archive layout; a node refuses a newer one it does not know."""
MANIFEST_NAME = "narun-artifact.json"
"""The manifest's member name at the top of a python archive."""
PROJECT_DIR = "project"
"""Top-level folder of a python archive holding the project's files."""
WHEELS_DIR = "wheels"
"""Top-level folder of a python archive holding every wheel to install."""
IGNORE_FILE = ".narunignore"
"""A project's file of patterns to leave out of its artifact (see :func:`parse_ignore`)."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# Folders and files of a project directory that never go into an artifact: version
# control, virtualenvs, caches and build output (rebuilt from the project anyway).
_EXCLUDED_NAMES = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "build",
        "dist",
        ".DS_Store",
    }
)
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".egg-info")


class ArtifactError(NarunError):
    """An artifact could not be packed, stored, fetched, verified or installed.

    The message says which artifact (path, object name or digest) and why.
    """


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


def format_digest(sha256: bytes) -> str:
    """The digest string of a SHA-256 hash: ``SHA-256=`` + padded base64url (Go's form)."""
    if len(sha256) != 32:
        raise ArtifactError(f"a SHA-256 hash has 32 bytes, not {len(sha256)}")
    return DIGEST_PREFIX + base64.urlsafe_b64encode(sha256).decode("ascii")


def _digest_bytes(digest: str) -> bytes:
    if not digest.upper().startswith(DIGEST_PREFIX):
        raise ArtifactError(f"digest {digest!r} does not start with {DIGEST_PREFIX!r}")
    text = digest[len(DIGEST_PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}=?", text):
        raise ArtifactError(f"digest {digest!r} is not 32 bytes in base64url")
    try:
        raw = base64.urlsafe_b64decode(text.rstrip("=") + "=")
    except (binascii.Error, ValueError) as exc:  # pragma: no cover - the pattern excludes it
        raise ArtifactError(f"digest {digest!r} is not base64url: {exc}") from None
    return raw


def normalize_digest(digest: str) -> str:
    """Return ``digest`` in the canonical form, or raise :class:`ArtifactError`.

    Accepts any case of the prefix and the unpadded base64 that some writers emit, so
    two spellings of one hash compare equal after normalizing.
    """
    return format_digest(_digest_bytes(digest))


def digest_key(digest: str) -> str:
    """A file-name-safe key of a digest (unpadded base64url, 43 characters)."""
    return base64.urlsafe_b64encode(_digest_bytes(digest)).decode("ascii").rstrip("=")


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid app name for object names, else raise.

    Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most
    100 characters: it becomes part of object names and of file names on nodes.
    """
    if not _NAME.fullmatch(name):
        raise ArtifactError(
            f"app name {name!r} is not valid: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit, at most 100 characters)"
        )
    return name


def short_digest(digest: str) -> str:
    """The first 16 hex digits of a digest's SHA-256 (64 bits: enough to tell apart)."""
    return _digest_bytes(digest).hex()[:16]


def object_name(name: str, digest: str) -> str:
    """The object name of an artifact: ``<name>-<first 16 hex digits of its SHA-256>``.

    One name per content, so a new version never overwrites the one that nodes run.
    """
    return f"{check_name(name)}-{short_digest(digest)}"


def local_file_name(object_name: str) -> str:
    """A file name for an object on a node's disk: unsafe characters become ``_``."""
    safe = _UNSAFE.sub("_", object_name)[:100]
    if safe in {"", ".", ".."}:
        raise ArtifactError(f"object name {object_name!r} cannot be a file name")
    return safe


def object_headers(
    *,
    name: str,
    digest: str,
    kind: ArtifactKind,
    original_file: str,
    manifest: Manifest | None,
    platform: tuple[str, str] | None = None,
) -> dict[str, list[str]]:
    """The metadata stored with an artifact object (NATS header map: name -> values).

    Go narun's ``narun-app-name``, ``narun-original-file`` and, for an executable of a
    known platform, ``narun-goos`` and ``narun-goarch``; plus ``narun-digest``,
    ``narun-kind`` and, for python artifacts, where their wheels were built.
    """
    headers: dict[str, list[str]] = {
        "narun-app-name": [name],
        "narun-digest": [normalize_digest(digest)],
        "narun-kind": [kind],
        "narun-original-file": [original_file],
    }
    if platform is not None:
        headers["narun-goos"], headers["narun-goarch"] = [platform[0]], [platform[1]]
    if manifest is not None:
        headers["narun-python"] = [manifest.python]
        headers["narun-platform"] = [manifest.platform]
        headers["narun-version"] = [manifest.narun_version]
    return headers


def parse_ignore(text: str) -> tuple[str, ...]:
    """The patterns of a ``.narunignore`` file, one per line; ``#`` starts a comment line.

    A pattern without ``/`` matches a file or folder name at any depth (``*.csv``,
    ``node_modules``); one with ``/`` matches a path from the project's top
    (``data/raw``, ``/secrets/*.pem``). ``*``, ``?`` and ``[...]`` as in shells. A
    matched folder is left out with everything in it. ``!`` (re-include) is refused.
    """
    patterns = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise ArtifactError(
                f"{IGNORE_FILE} line {number}: '!' patterns (re-include) are not supported"
            )
        pattern = line.strip("/")
        if pattern:
            patterns.append(("/" if "/" in line.rstrip("/") else "") + pattern)
    return tuple(patterns)


def is_excluded(relative: PurePosixPath, patterns: Sequence[str] = ()) -> bool:
    """Whether a path inside a project directory stays out of the artifact.

    Always left out: version control, virtualenvs, bytecode, tool caches and build
    output; also what ``patterns`` (from :func:`parse_ignore`) match.
    """
    parts = relative.parts
    if any(part in _EXCLUDED_NAMES or part.endswith(_EXCLUDED_SUFFIXES) for part in parts):
        return True
    for pattern in patterns:
        if pattern.startswith("/"):
            anchored = pattern[1:]
            if any(fnmatchcase("/".join(parts[:i]), anchored) for i in range(1, len(parts) + 1)):
                return True
        elif any(fnmatchcase(part, pattern) for part in parts):
            return True
    return False


@dataclass(frozen=True)
class Manifest:
    """``narun-artifact.json``: what a python archive holds and where it was built."""

    wheels: tuple[str, ...]
    """File names (in ``wheels/``) of every distribution to install, narun's included."""
    narun_version: str
    """Version of the narun bundled into the artifact (the deploying machine's)."""
    python: str
    """Interpreter the wheels were resolved for, e.g. ``cpython-3.11``."""
    platform: str
    """``sysconfig.get_platform()`` of the deploying machine, e.g. ``linux-x86_64``."""
    format: int = FORMAT_VERSION
    """Layout version."""
    kind: ArtifactKind = "python"
    """Always ``python`` (executables are stored as they are, without a manifest)."""

    def to_json(self) -> bytes:
        """The manifest's bytes, stable for equal manifests."""
        body = {
            "format": self.format,
            "kind": self.kind,
            "wheels": list(self.wheels),
            "narun_version": self.narun_version,
            "python": self.python,
            "platform": self.platform,
        }
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse and check a manifest; :class:`ArtifactError` names the bad field."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{MANIFEST_NAME} is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ArtifactError(f"{MANIFEST_NAME} is not a JSON object")
        fmt = body.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise ArtifactError(f"{MANIFEST_NAME}: 'format' must be an integer")
        if fmt > FORMAT_VERSION:
            raise ArtifactError(
                f"{MANIFEST_NAME}: format {fmt} is newer than this narun knows "
                f"({FORMAT_VERSION}); upgrade narun on this node"
            )
        if body.get("kind") != "python":
            raise ArtifactError(f"{MANIFEST_NAME}: 'kind' must be 'python'")
        wheels = body.get("wheels")
        if not isinstance(wheels, list) or not all(
            isinstance(w, str) and _is_wheel_name(w) for w in wheels
        ):
            raise ArtifactError(f"{MANIFEST_NAME}: 'wheels' must be a list of wheel file names")
        strings = _strings(body, ("narun_version", "python", "platform"))
        return cls(
            wheels=tuple(wheels),
            narun_version=strings["narun_version"],
            python=strings["python"],
            platform=strings["platform"],
            format=fmt,
        )


def _strings(body: Mapping[str, object], keys: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in keys:
        value = body.get(key)
        if not isinstance(value, str) or not value:
            raise ArtifactError(f"{MANIFEST_NAME}: {key!r} must be a non-empty string")
        found[key] = value
    return found


def _is_wheel_name(name: str) -> bool:
    return name.endswith(".whl") and "/" not in name and "\\" not in name and name[0] != "."


@dataclass(frozen=True)
class Member:
    """One entry of a python archive as the checks see it."""

    name: str
    """The member's path inside the archive."""
    type: Literal["file", "dir", "other"]
    """Regular file, directory, or anything else (links, devices, FIFOs: all refused)."""


def check_members(members: Iterable[Member], *, wheels: Iterable[str] = ()) -> None:
    """Refuse an archive whose entries a node must not unpack.

    Allowed: the manifest (a file), ``project/`` and what is under it, ``wheels/`` and
    ``*.whl`` files directly in it; only regular files and folders; relative, normalized
    paths without ``..``; no entry twice. ``wheels`` (from the manifest) must all be there.
    """
    seen: set[str] = set()
    for member in members:
        name = member.name
        path = PurePosixPath(name)
        if (
            not name
            or name.startswith("/")
            or "\\" in name
            or "\x00" in name
            or str(path) != name
            or any(part in {"", ".", ".."} for part in path.parts)
        ):
            raise ArtifactError(f"archive entry {name!r} is not a plain relative path")
        if member.type == "other":
            raise ArtifactError(
                f"archive entry {name!r} is a link or special file; only files and folders"
            )
        if name in seen:
            raise ArtifactError(f"archive entry {name!r} appears twice")
        seen.add(name)
        top = path.parts[0]
        if name == MANIFEST_NAME:
            if member.type != "file":
                raise ArtifactError(f"{MANIFEST_NAME} in the archive is not a file")
        elif top == PROJECT_DIR:
            if len(path.parts) == 1 and member.type != "dir":
                raise ArtifactError(f"archive entry {name!r} must be a folder")
        elif top == WHEELS_DIR:
            if len(path.parts) == 1:
                if member.type != "dir":
                    raise ArtifactError(f"archive entry {name!r} must be a folder")
            elif len(path.parts) != 2 or member.type != "file" or not _is_wheel_name(path.name):
                raise ArtifactError(f"archive entry {name!r}: {WHEELS_DIR}/ holds only .whl files")
        else:
            raise ArtifactError(
                f"archive entry {name!r} is outside {PROJECT_DIR}/ and {WHEELS_DIR}/"
            )
    if MANIFEST_NAME not in seen:
        raise ArtifactError(f"archive has no {MANIFEST_NAME}: not a narun python artifact")
    missing = [w for w in wheels if f"{WHEELS_DIR}/{w}" not in seen]
    if missing:
        raise ArtifactError(f"archive lacks wheels its manifest lists: {', '.join(missing)}")
