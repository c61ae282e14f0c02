"""WebSocket records in a stream body: encoding, reassembly across chunks, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from narun.protocol.stream import StreamError
from narun.protocol.wsmsg import (
    MessageDecoder,
    Record,
    RecordType,
    encode_close,
    encode_message,
)


def test_text_binary_close_round_trip() -> None:
    body = encode_message("héllo") + encode_message(b"\x00\xff") + encode_close(4001, "bye")
    assert MessageDecoder().feed(body) == [
        Record(RecordType.TEXT, "héllo"),
        Record(RecordType.BINARY, b"\x00\xff"),
        Record(RecordType.CLOSE, "bye", 4001),
    ]


def test_wire_layout() -> None:
    assert encode_message("ab") == b"\x01\x00\x00\x00\x02ab"
    assert encode_message(b"") == b"\x02\x00\x00\x00\x00"
    assert encode_close(1000) == b"\x08\x00\x00\x00\x02\x03\xe8"


@given(st.lists(st.one_of(st.text(), st.binary())), st.integers(1, 7))
def test_any_chunking_gives_the_same_messages(messages: list[str | bytes], step: int) -> None:
    body = b"".join(encode_message(m) for m in messages)
    decoder = MessageDecoder()
    got: list[str | bytes] = []
    for i in range(0, len(body), step):
        got += [r.data for r in decoder.feed(body[i : i + step])]
    assert got == messages
    assert decoder.pending == 0


def test_close_reason_cut_at_a_character_boundary() -> None:
    (record,) = MessageDecoder().feed(encode_close(1000, "é" * 100))
    assert record.data == "é" * 61  # 122 bytes: the 62nd "é" would pass 123
    assert encode_close(999)[5:7] == b"\x03\xe8"  # out of range: 1000
    assert encode_close(5000)[5:7] == b"\x03\xf3"  # out of range: 1011


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"\x07\x00\x00\x00\x00", "unknown"),
        (b"\x01\x00\x00\x00\x01\xff", "UTF-8"),
        (b"\x08\x00\x00\x00\x01\x03", "without a code"),
        (b"\x02\x7f\xff\xff\xff", "too big"),
        (encode_close(1000) + encode_message("late"), "after the close"),
    ],
)
def test_bad_records_are_protocol_errors(body: bytes, what: str) -> None:
    with pytest.raises(StreamError, match=what) as info:
        MessageDecoder().feed(body)
    assert info.value.code == 502
