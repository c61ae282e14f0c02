"""Unit tests of narun.protocol.micro: the documents we send, the parsers of the answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from narun.protocol.micro import (
    EndpointInfo,
    EndpointStats,
    InfoResponse,
    MicroDocumentError,
    PingResponse,
    StatsResponse,
    control_subjects,
    format_duration,
    format_time,
    parse_info,
    parse_ping,
    parse_stats,
    parse_time,
)

# What nats.go's micro package sends (nil maps marshal to null, time.Time as RFC 3339 with
# nanoseconds, durations as integer nanoseconds, endpoints carry "data").
GO_PING = (
    b'{"name":"hello","id":"30e0bMATlBLySW7HHGMuR1","version":"1.0.0","metadata":null,'
    b'"type":"io.nats.micro.v1.ping_response"}'
)
GO_INFO = (
    b'{"name":"hello","id":"30e0bMATlBLySW7HHGMuR1","version":"1.0.0","metadata":null,'
    b'"type":"io.nats.micro.v1.info_response","description":"Hello from Go",'
    b'"endpoints":[{"name":"handler","subject":"hello","queue_group":"q","metadata":null}]}'
)
GO_STATS = (
    b'{"name":"hello","id":"30e0bMATlBLySW7HHGMuR1","version":"1.0.0",'
    b'"metadata":{"region":"eu"},"type":"io.nats.micro.v1.stats_response",'
    b'"endpoints":[{"name":"handler","subject":"hello","queue_group":"q",'
    b'"num_requests":24697,"num_errors":2,"last_error":"boom","data":{"cache_hits":5},'
    b'"processing_time":244000000,"average_processing_time":9879}],'
    b'"started":"2025-03-04T05:06:07.123456789Z"}'
)

# What nats-py's micro package sends: milliseconds in "started", {} metadata.
PY_STATS: dict[str, Any] = {
    "type": "io.nats.micro.v1.stats_response",
    "name": "hello",
    "id": "py1",
    "version": "0.2.0",
    "started": "2025-03-04T05:06:07.123Z",
    "endpoints": [
        {
            "name": "default",
            "subject": "hello.svc",
            "queue_group": "q",
            "num_requests": 3,
            "num_errors": 1,
            "last_error": "RuntimeError()",
            "processing_time": 3000,
            "average_processing_time": 1000,
        }
    ],
    "metadata": {},
}


# --- parse_ping ------------------------------------------------------------------------


def test_parse_go_ping_with_null_metadata() -> None:
    ping = parse_ping(GO_PING)
    assert (ping.name, ping.id, ping.version) == ("hello", "30e0bMATlBLySW7HHGMuR1", "1.0.0")
    assert ping.metadata == {}


def test_parse_ping_from_str_and_mapping_without_type() -> None:
    doc = {"name": "a", "id": "b", "version": "1.2.3", "metadata": {"k": "v"}}
    assert parse_ping(json.dumps(doc)) == parse_ping(doc)
    assert parse_ping(doc).metadata == {"k": "v"}


# --- parse_info ------------------------------------------------------------------------


def test_parse_go_info() -> None:
    info = parse_info(GO_INFO)
    assert info.description == "Hello from Go"
    assert info.metadata == {}
    assert info.endpoints == (EndpointInfo("handler", "hello", "q", {}),)


def test_parse_info_with_missing_optional_fields() -> None:
    info = parse_info({"name": "n", "id": "i"})
    assert (info.version, info.description, info.metadata, info.endpoints) == ("", "", {}, ())


def test_parse_info_endpoint_without_queue_group() -> None:
    info = parse_info({"name": "n", "id": "i", "endpoints": [{"name": "e", "subject": "s"}]})
    assert info.endpoints[0].queue_group == ""


# --- parse_stats -----------------------------------------------------------------------


def test_parse_go_stats() -> None:
    stats = parse_stats(GO_STATS)
    assert stats.metadata == {"region": "eu"}
    assert stats.started == datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert stats.endpoints == (
        EndpointStats(
            name="handler",
            subject="hello",
            queue_group="q",
            num_requests=24697,
            num_errors=2,
            last_error="boom",
            processing_time=244_000_000,
            average_processing_time=9879,
            data={"cache_hits": 5},
        ),
    )


def test_parse_python_stats() -> None:
    stats = parse_stats(PY_STATS)
    assert stats.started == datetime(2025, 3, 4, 5, 6, 7, 123000, tzinfo=UTC)
    (endpoint,) = stats.endpoints
    assert (endpoint.num_requests, endpoint.num_errors) == (3, 1)
    assert (endpoint.processing_time, endpoint.average_processing_time) == (3000, 1000)
    assert endpoint.data is None


def test_parse_stats_with_missing_optional_fields() -> None:
    stats = parse_stats(
        {
            "name": "n",
            "id": "i",
            "metadata": None,
            "endpoints": [{"name": "e", "subject": "s", "num_requests": 4, "processing_time": 10}],
        }
    )
    assert stats.started is None
    assert stats.metadata == {}
    (endpoint,) = stats.endpoints
    assert endpoint.num_errors == 0
    assert endpoint.last_error == ""
    assert endpoint.average_processing_time == 2  # computed, truncated, when missing


def test_parse_stats_tolerates_float_and_string_durations() -> None:
    doc = {
        "name": "n",
        "id": "i",
        "endpoints": [{"name": "e", "processing_time": 1500.4, "average_processing_time": "7"}],
    }
    (endpoint,) = parse_stats(doc).endpoints
    assert (endpoint.processing_time, endpoint.average_processing_time) == (1500, 7)


def test_parse_stats_with_null_endpoints() -> None:
    assert parse_stats({"name": "n", "id": "i", "endpoints": None}).endpoints == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04T05:06:07Z", datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)),
        ("2025-03-04T05:06:07.5Z", datetime(2025, 3, 4, 5, 6, 7, 500000, tzinfo=UTC)),
        ("2025-03-04T05:06:07.1234567Z", datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)),
        ("2025-03-04T07:06:07.25+02:00", datetime(2025, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)),
        ("2025-03-04T05:06:07.123456", datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("doc", "complaint"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        ({"name": "n"}, "id: missing"),
        ({"id": "i"}, "name: missing"),
        ({"name": "n", "id": "i", "type": "io.nats.micro.v1.info_response"}, "expected a"),
        ({"name": "n", "id": "i", "started": "yesterday"}, "started"),
        ({"name": 5, "id": "i"}, "name: expected a string"),
        ({"name": "n", "id": "i", "metadata": [1]}, "metadata: expected an object"),
        ({"name": "n", "id": "i", "endpoints": {"a": 1}}, "endpoints: expected a list"),
        ({"name": "n", "id": "i", "endpoints": [{"num_requests": True}]}, "num_requests"),
        ({"name": "n", "id": "i", "endpoints": [{"processing_time": "slow"}]}, "processing"),
    ],
)
def test_parse_stats_rejects_what_is_not_a_stats_document(doc: Any, complaint: str) -> None:
    with pytest.raises(MicroDocumentError, match=complaint):
        parse_stats(doc)


def test_document_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_ping(b"{")


# --- our own documents round-trip through the parsers ----------------------------------


STARTED = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _stats() -> StatsResponse:
    entry = EndpointStats(
        name="handler",
        subject="hello",
        queue_group="q",
        num_requests=2,
        num_errors=1,
        last_error="HTTP 500",
        processing_time=3_500,
        average_processing_time=1_750,
    )
    return StatsResponse(
        name="hello",
        id="abc",
        version="1.2.3",
        started=STARTED,
        metadata={"k": "v"},
        endpoints=(entry,),
    )


def test_our_stats_document_round_trips() -> None:
    doc = _stats().as_dict()
    assert doc["type"] == "io.nats.micro.v1.stats_response"
    assert doc["started"] == "2025-01-02T03:04:05.678901000Z"
    assert parse_stats(json.dumps(doc)) == _stats()
    assert parse_stats(json.dumps(doc)).as_dict() == doc


def test_stats_entry_fields_and_data_only_when_present() -> None:
    (entry,) = _stats().as_dict()["endpoints"]
    assert entry == {
        "name": "handler",
        "subject": "hello",
        "queue_group": "q",
        "num_requests": 2,
        "num_errors": 1,
        "last_error": "HTTP 500",
        "processing_time": 3_500,
        "average_processing_time": 1_750,
    }
    with_data = EndpointStats(name="e", subject="s", data={"hits": 1}).as_dict()
    assert with_data["data"] == {"hits": 1}


def test_our_info_and_ping_documents_parse() -> None:
    ping = PingResponse(name="hello", id="abc", version="1.2.3", metadata={"k": "v"})
    info = InfoResponse(
        name="hello",
        id="abc",
        version="1.2.3",
        description="d",
        metadata={"k": "v"},
        endpoints=(EndpointInfo("handler", "hello", "q"),),
    )
    doc = info.as_dict()
    assert doc["endpoints"] == [
        {"name": "handler", "subject": "hello", "queue_group": "q", "metadata": None}
    ]  # as Go writes a nil map
    parsed = parse_info(json.dumps(doc))
    assert parsed.description == "d"
    assert parsed.endpoints == (EndpointInfo("handler", "hello", "q", {}),)
    assert parse_ping(json.dumps(ping.as_dict())) == ping


def test_format_time_converts_to_utc() -> None:
    moment = datetime(2025, 1, 2, 5, 4, 5, 1, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2025-01-02T03:04:05.000001000Z"


def test_control_subjects_cover_every_verb_and_scope() -> None:
    subjects = {s for _, s in control_subjects("hello", "abc")}
    assert "$SRV.PING" in subjects
    assert "$SRV.INFO.hello" in subjects
    assert "$SRV.STATS.hello.abc" in subjects
    assert len(subjects) == 9


# --- durations for people --------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (1_500, "1.5µs"),
        (9_879, "9.9µs"),
        (10_000, "10µs"),
        (999_499, "999µs"),
        (999_960, "1ms"),  # rounding reaches the next unit
        (2_500_000, "2.5ms"),
        (244_000_000, "244ms"),
        (1_500_000_000, "1.5s"),
        (59_000_000_000, "59s"),
        (59_990_000_000, "1m0s"),
        (65_400_000_000, "1m5s"),
        (3_725_000_000_000, "1h2m5s"),
        (-2_000, "-2µs"),
    ],
)
def test_format_duration(nanos: int, text: str) -> None:
    assert format_duration(nanos) == text
