"""gRPC records, head and trailer inside a stream (narun.protocol.grpcstream)."""

from __future__ import annotations

import pytest

from narun.protocol import grpcstream
from narun.protocol.grpcstream import RecordReader
from narun.protocol.grpcwire import GRPCStatus, GRPCWireError, Metadatum, StatusCode


def test_records_are_cut_whatever_the_chunk_boundaries() -> None:
    messages = [b"", b"a", b"x" * 1000, bytes(range(256))]
    stream = b"".join(grpcstream.encode_record(m) for m in messages)
    stream += grpcstream.encode_trailer(GRPCStatus())
    for step in (1, 2, 5, 7, 64, len(stream)):
        reader = RecordReader()
        got: list[tuple[int, bytes]] = []
        for i in range(0, len(stream), step):
            got += reader.feed(stream[i : i + step])
        assert [d for f, d in got[:-1]] == messages
        assert all(f == grpcstream.MESSAGE for f, _ in got[:-1])
        assert got[-1][0] == grpcstream.TRAILER
        assert not reader.pending


def test_a_record_cut_short_is_pending() -> None:
    reader = RecordReader()
    assert reader.feed(grpcstream.encode_record(b"hello")[:-1]) == []
    assert reader.pending


@pytest.mark.parametrize(
    "data", [b"\x01\x00\x00\x00\x00", b"\x00\xff\xff\xff\xff"], ids=["flags", "size"]
)
def test_bad_records_are_refused(data: bytes) -> None:
    with pytest.raises(GRPCWireError):
        RecordReader().feed(data)


def test_trailer_carries_status_message_and_trailing_metadata() -> None:
    status = GRPCStatus(
        StatusCode.FAILED_PRECONDITION,
        "told to: ünïcode, spaces",
        trailing_metadata=(Metadatum("why", "asked"), Metadatum("b-bin", b"\x00\xff")),
    )
    record = grpcstream.encode_trailer(status)
    ((flags, data),) = RecordReader().feed(record)
    assert flags == grpcstream.TRAILER
    assert grpcstream.decode_trailer(data) == status


def test_ok_trailer_has_no_message() -> None:
    ((_, data),) = RecordReader().feed(grpcstream.encode_trailer(GRPCStatus(message="x")))
    assert grpcstream.decode_trailer(data) == GRPCStatus()


@pytest.mark.parametrize("data", [b"", b"Narun-Grpc-Status: 99\r\n", b"no colon\r\n", b"\xff"])
def test_bad_trailers_are_refused(data: bytes) -> None:
    with pytest.raises(GRPCWireError):
        grpcstream.decode_trailer(data)


def test_head_carries_initial_metadata() -> None:
    initial = (Metadatum("kind", "ticks"), Metadatum("k", "a b"))
    assert grpcstream.decode_head(grpcstream.encode_head(initial)) == initial
    assert grpcstream.encode_head(()) == b""
    assert grpcstream.decode_head(b"") == ()
