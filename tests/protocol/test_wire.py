"""Small helpers of the NATS side of the wire (narun.protocol.wire)."""

from __future__ import annotations

import pytest

from narun.protocol import wire


@pytest.mark.parametrize(
    ("headers", "narun"),
    [
        (None, False),
        ({}, False),
        ({"Content-Type": "application/bhttp"}, False),  # all a Go gateway sends
        ({"Content-Type": "application/bhttp", "traceparent": "00-..."}, False),
        ({"Narun-Request-Id": "r"}, True),
        ({"Content-Type": "application/bhttp", "Narun-Timeout-Ms": "5000"}, True),
        ({"narun-client-addr": "1.2.3.4:5"}, True),
        ({"X-Original-Grpc-Method": "/a.B/C"}, False),
    ],
)
def test_from_narun_gateway(headers: dict[str, str] | None, narun: bool) -> None:
    assert wire.from_narun_gateway(headers) is narun


def test_timeouts_round_trip_in_whole_milliseconds() -> None:
    assert wire.format_timeout(0.0001) == "1"
    assert wire.format_timeout(2.5) == "2500"
    assert wire.parse_timeout("2500") == 2.5
    assert wire.parse_timeout("-1") is None
    assert wire.parse_timeout(None) is None
