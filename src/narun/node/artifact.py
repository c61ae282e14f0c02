"""Artifacts: pack an app, store it in the NATS Object Store, fetch it, install it.

The one module the node runner and ``narun deploy`` use: ``narun deploy`` calls
:func:`pack` (:mod:`narun.node.packer`) and :func:`upload`; a node calls
:func:`download` and :func:`install` (:mod:`narun.node.installer`). The format (archive
layout, digest, object names, metadata) is :mod:`narun.node.archive`; ``docs/node.md``
("Artifacts") describes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tarfile
import uuid
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.api
import nats.js.errors

from narun.node.archive import (
    MANIFEST_NAME,
    Artifact,
    ArtifactError,
    Manifest,
    digest_key,
    local_file_name,
    normalize_digest,
    object_headers,
    object_name,
)
from narun.node.binfmt import HEAD_SIZE, executable_platform
from narun.node.installer import Installed, file_digest, install
from narun.node.packer import pack

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
        manifest, platform = None, None
        if artifact.kind == "python":
            manifest = await asyncio.to_thread(_read_manifest, artifact.path)
        else:
            head = await asyncio.to_thread(_head, artifact.path)
            platform = executable_platform(head)
        meta = nats.js.api.ObjectMeta(
            name=oname,
            description=f"narun {artifact.kind} artifact of {name}",
            headers=object_headers(
                name=name,
                digest=digest,
                kind=artifact.kind,
                original_file=artifact.path.name,
                manifest=manifest,
                platform=platform,
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
    except OSError as exc:
        raise ArtifactError(f"reading {artifact.path} failed: {exc}") from exc
    return oname


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(HEAD_SIZE)


def _read_manifest(path: Path) -> Manifest:
    try:
        with tarfile.open(path, "r:gz") as tar:
            f = tar.extractfile(MANIFEST_NAME)
            if f is None:
                raise ArtifactError(f"{path}: {MANIFEST_NAME} is not a file")
            return Manifest.from_json(f.read())
    except (tarfile.TarError, KeyError, EOFError, zlib.error) as exc:
        raise ArtifactError(f"{path} is not a python artifact (packed by pack()): {exc}") from None


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
    part = folder / f".{target.name}.{uuid.uuid4().hex}.part"
    try:
        folder.mkdir(parents=True, exist_ok=True)
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
    except OSError as exc:
        raise ArtifactError(f"writing {object_name!r} to {folder} failed: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    return target


def _flush(f: Any) -> None:
    f.flush()
    with contextlib.suppress(OSError):
        os.fsync(f.fileno())
