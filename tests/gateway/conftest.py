"""Fixtures of the gateway tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Processes
from tests.support.frontstack import (
    FRONT_HEADER_TIMEOUT,
    FRONT_MAX_HEADER,
    FRONT_ROUTE_TIMEOUT,
    front_stack,
)


@pytest.fixture(scope="package")
def front_port(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of one gateway (and consumer) shared by the socket tests of the front."""
    with Processes(tmp_path_factory.mktemp("front"), nats_url) as procs:
        yield front_stack(
            procs,
            timeout=FRONT_ROUTE_TIMEOUT,
            header_timeout_seconds=FRONT_HEADER_TIMEOUT,
            max_header_bytes=FRONT_MAX_HEADER,
        )
