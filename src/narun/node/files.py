"""Files that specs mount into instances: the Object Store ``narun-files`` (Go narun's).

``narun files add NAME PATH`` stores a file under a logical name; a spec's ``mounts``
places it in an instance's work directory. A node fetches it once per digest (kept under
``<data-dir>/files/<digest>/``), checks the bytes against the digest the Object Store
recorded (``SHA-256=`` base64url, as for artifacts) and copies it into the work directory
with mode 0444.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats.errors
import nats.js.api
import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.object_store import ObjectStore

from narun.node.archive import digest_key, local_file_name, normalize_digest
from narun.node.installer import file_digest
from narun.node.store import NodeError

__all__ = [
    "FILES_BUCKET",
    "StoredFile",
    "add_file",
    "fetch_file",
    "list_files",
    "place",
    "remove_file",
]

FILES_BUCKET = "narun-files"
"""Object Store bucket of mountable files (Go narun's name)."""


@dataclass(frozen=True)
class StoredFile:
    """One file as ``narun files ls`` shows it."""

    name: str
    size: int
    modified: str
    original_filename: str
    digest: str


async def _store(js: JetStreamContext, *, create: bool) -> ObjectStore:
    try:
        return await js.object_store(FILES_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            raise NodeError(f"no file stored yet (no {FILES_BUCKET} bucket)") from None
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
        raise NodeError("NATS has no JetStream: start nats-server with --jetstream") from None
    try:
        return await js.create_object_store(FILES_BUCKET)
    except nats.js.errors.BadRequestError:
        return await js.object_store(FILES_BUCKET)


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or len(name) > 255:
        raise NodeError(f"file name {name!r}: one path element, no '/'")


async def add_file(js: JetStreamContext, name: str, path: Path) -> StoredFile:
    """Store ``path`` as ``name`` (replacing a file of that name)."""
    _check_name(name)
    store = await _store(js, create=True)
    meta = nats.js.api.ObjectMeta(
        name=name,
        headers={
            "original-filename": path.name,
            "upload-timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    )
    try:
        f = await asyncio.to_thread(path.open, "rb")
    except OSError as exc:
        raise NodeError(f"cannot read {path}: {exc.strerror}") from None
    try:
        info = await store.put(name, f, meta=meta)
    finally:
        f.close()
    return _row(info)


def _row(info: nats.js.api.ObjectInfo) -> StoredFile:
    headers = info.headers or {}
    original = headers.get("original-filename", "")
    if isinstance(original, list):
        original = original[0] if original else ""
    return StoredFile(
        name=info.name,
        size=info.size or 0,
        modified=str(info.mtime or ""),
        original_filename=str(original),
        digest=str(info.digest or ""),
    )


async def list_files(js: JetStreamContext) -> list[StoredFile]:
    """Every stored file, by name."""
    store = await _store(js, create=False)
    try:
        infos = await store.list()
    except nats.js.errors.NotFoundError:
        return []
    return sorted((_row(i) for i in infos if not i.deleted), key=lambda r: r.name)


async def remove_file(js: JetStreamContext, name: str) -> None:
    """Delete ``name``; :class:`NodeError` if there is none."""
    store = await _store(js, create=False)
    try:
        info = await store.get_info(name)
    except nats.js.errors.ObjectNotFoundError:
        info = None
    if info is None or info.deleted:
        raise NodeError(f"no file named {name!r}")
    await store.delete(name)


async def fetch_file(js: JetStreamContext, name: str, *, cache_dir: Path) -> Path:
    """The local, digest-checked copy of ``name`` (fetched once per digest)."""
    store = await _store(js, create=False)
    try:
        info = await store.get_info(name)
    except nats.js.errors.ObjectNotFoundError:
        raise NodeError(f"mount: no file named {name!r} in {FILES_BUCKET}") from None
    if info.deleted or not info.digest:
        raise NodeError(f"mount: no file named {name!r} in {FILES_BUCKET}")
    expected = normalize_digest(info.digest)
    folder = cache_dir / digest_key(expected)
    target = folder / local_file_name(name)
    if target.is_file() and await asyncio.to_thread(file_digest, target) == expected:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f".{target.name}.{uuid.uuid4().hex}.part"
    try:
        with part.open("wb") as f:
            await store.get(name, writeinto=f)
        got = await asyncio.to_thread(file_digest, part)
        if got != expected:
            raise NodeError(f"mount: file {name!r} arrived with digest {got}, not {expected}")
        part.replace(target)
    except nats.js.errors.DigestMismatchError:
        raise NodeError(f"mount: file {name!r} does not match its stored digest") from None
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
    return target


def place(source: Path, work_dir: Path, relative: str) -> Path:
    """Copy ``source`` to ``work_dir/relative`` with mode 0444 (replacing what is there)."""
    dest = work_dir / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        with contextlib.suppress(OSError):
            os.chmod(dest, 0o644)
        dest.unlink()
    shutil.copyfile(source, dest)
    os.chmod(dest, 0o444)
    return dest
