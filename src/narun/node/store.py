"""The node runner's JetStream objects: create them, read them whole, write with CAS.

Used by the node (``runner``) and by the commands (``client``). Every failure a user can
cause (no JetStream, a bucket made with other settings) becomes a :class:`NodeError` that
says what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from narun.errors import NarunError
from narun.node.schema import (
    APP_CONFIGS_BUCKET,
    LOG_STREAM,
    NODE_STATES_BUCKET,
    PLACEMENTS_BUCKET,
    SCALE_BUCKET,
)
from narun.node.secrets import SECRETS_BUCKET

__all__ = [
    "Buckets",
    "NodeError",
    "NothingDeployed",
    "ensure_log_stream",
    "open_buckets",
    "open_scale_bucket",
    "open_secrets",
    "read_all",
]

logger = logging.getLogger(__name__)


class NodeError(NarunError):
    """A node-runner operation failed; the message says what and why."""


class NothingDeployed(NodeError):
    """The buckets do not exist yet: no node ran and nothing was deployed on this NATS."""


@dataclass(frozen=True)
class Buckets:
    """The three KV buckets."""

    js: JetStreamContext
    apps: KeyValue
    nodes: KeyValue
    placements: KeyValue


async def _bucket(js: JetStreamContext, name: str, *, ttl: float | None, create: bool) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        if not create:
            raise
    except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
        raise NodeError("NATS has no JetStream: start nats-server with --jetstream (-js)") from None
    except nats.errors.TimeoutError:
        raise NodeError("JetStream did not answer (is it enabled on the server?)") from None
    config = KeyValueConfig(bucket=name, history=1, ttl=ttl, storage=StorageType.FILE)
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        return await js.key_value(name)  # made meanwhile by another node


async def open_buckets(
    nc: Client, *, node_expiry: float | None = None, create: bool = True
) -> Buckets:
    """Open (and unless ``create=False``, create) the buckets.

    ``node_expiry`` is the TTL given to ``node-runner-states`` when this call creates it; a
    bucket that exists keeps its own (a warning says so when they differ).
    """
    js = nc.jetstream(timeout=10)
    try:
        apps = await _bucket(js, APP_CONFIGS_BUCKET, ttl=None, create=create)
        nodes = await _bucket(js, NODE_STATES_BUCKET, ttl=node_expiry, create=create)
        placements = await _bucket(js, PLACEMENTS_BUCKET, ttl=None, create=create)
    except nats.js.errors.BucketNotFoundError:
        raise NothingDeployed("nothing deployed yet (no node runner bucket in this NATS)") from None
    if node_expiry is not None:
        status = await nodes.status()
        ttl = status.ttl
        if ttl and abs(ttl - node_expiry) > 0.01:
            logger.warning(
                "bucket %s expires node states after %gs, not --node-expiry %gs (the bucket "
                "was made so; delete it to change)",
                NODE_STATES_BUCKET,
                ttl,
                node_expiry,
            )
    return Buckets(js=js, apps=apps, nodes=nodes, placements=placements)


async def open_secrets(nc: Client, *, create: bool = True) -> KeyValue:
    """The ``narun-secrets`` bucket (history 1, as Go narun makes it)."""
    js = nc.jetstream(timeout=10)
    try:
        return await _bucket(js, SECRETS_BUCKET, ttl=None, create=create)
    except nats.js.errors.BucketNotFoundError:
        raise NodeError("no secret stored yet (no narun-secrets bucket in this NATS)") from None


async def open_scale_bucket(js: JetStreamContext) -> KeyValue:
    """Open (or create) ``narun-scale``, the instance counts of autoscaled apps."""
    return await _bucket(js, SCALE_BUCKET, ttl=None, create=True)


async def ensure_log_stream(js: JetStreamContext, *, max_bytes: int, max_age: float) -> None:
    """Create (or update the limits of) the stream that keeps ``logs.>``."""
    config = StreamConfig(
        name=LOG_STREAM,
        subjects=["logs.>"],
        max_bytes=max_bytes,
        max_age=max_age,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
    )
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        await js.update_stream(config)


async def read_all(kv: KeyValue) -> dict[str, KeyValue.Entry]:
    """Every live key of ``kv`` with its entry (value and revision), in one pass."""
    watcher = await kv.watchall(ignore_deletes=True)
    out: dict[str, KeyValue.Entry] = {}
    try:
        async for entry in watcher:
            if entry is None:  # the end of what is stored now
                break
            if entry.operation is None and entry.value is not None:
                out[entry.key] = entry
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return out
