"""Shared fixtures: a real nats-server per test session (and per test where needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from narun.transport.server import NATSServer


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NATSServer]:
    """One real nats-server on a free loopback port for the whole session.

    Tests stay apart by using unique service names (``support.unique_service``).
    """
    with NATSServer() as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: NATSServer) -> str:
    return nats_server.url


@pytest.fixture
def own_nats_server() -> Iterator[NATSServer]:
    """A nats-server of this test alone (for tests that stop or reconfigure it)."""
    with NATSServer() as server:
        yield server


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the log files of a module's processes."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def jetstream_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NATSServer]:
    """One real nats-server with JetStream (KV, Object Store) for the whole session.

    Tests stay apart by unique bucket, key and object names.
    """
    store = tmp_path_factory.mktemp("jetstream")
    with NATSServer(extra_config=f'jetstream {{ store_dir: "{store}" }}') as server:
        yield server


@pytest.fixture(scope="session")
def jetstream_url(jetstream_server: NATSServer) -> str:
    return jetstream_server.url
