"""The stream frames and the state of one stream end (narun.protocol.stream)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from narun.protocol.stream import (
    FIN,
    Frame,
    Kind,
    StreamError,
    StreamState,
    decode,
    encode,
    encode_data,
    frame_data_size,
)

# --- frames on the wire ------------------------------------------------------------


def test_golden_frames() -> None:
    assert encode(Frame(Kind.DATA, 1, b"ab")) == b"\x01\x00\x00\x00\x01ab"
    assert encode_data(1, b"ab") == b"\x01\x00\x00\x00\x01ab"
    assert encode(Frame(Kind.END, 7)) == b"\x02\x00\x00\x00\x07"
    assert encode(Frame(Kind.HEARTBEAT, 256)) == b"\x05\x00\x00\x01\x00"
    assert encode(Frame(Kind.CREDIT, 2, value=1 << 20)) == (
        b"\x04\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x10\x00\x00"
    )
    assert encode(Frame(Kind.ABORT, 3, b"gone", 499)) == b"\x03\x00\x00\x00\x03\x01\xf3gone"
    assert (
        encode(Frame(Kind.HEAD, 0, b"\x01\x40\xc8", FIN)) == b"\x00\x00\x00\x00\x00\x01\x01\x40\xc8"
    )


@given(
    kind=st.sampled_from(list(Kind)),
    seq=st.integers(0, 2**32 - 1),
    data=st.binary(min_size=1, max_size=300),
    value=st.integers(0, 2**16 - 1),
)
def test_round_trip(kind: Kind, seq: int, data: bytes, value: int) -> None:
    if kind is Kind.HEAD:
        frame = Frame(kind, seq, data, value & FIN)
    elif kind is Kind.DATA:
        frame = Frame(kind, seq, data)
    elif kind is Kind.ABORT:
        frame = Frame(kind, seq, data.hex()[:200].encode(), value)
    elif kind is Kind.CREDIT:
        frame = Frame(kind, seq, value=value * 977)
    else:
        frame = Frame(kind, seq)
    assert decode(encode(frame)) == frame


def test_abort_reason_is_cut_on_a_character_boundary() -> None:
    frame = decode(encode(Frame(Kind.ABORT, 0, ("é" * 150).encode(), 500)))
    assert frame.data == ("é" * 100).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01\x00\x00\x00",  # short header
        b"\x09\x00\x00\x00\x00",  # unknown kind
        b"\x01\x00\x00\x00\x00",  # empty DATA
        b"\x00\x00\x00\x00\x00",  # HEAD without flags
        b"\x00\x00\x00\x00\x00\x02xx",  # HEAD with a reserved flag
        b"\x03\x00\x00\x00\x00\x01",  # ABORT without a full code
        b"\x03\x00\x00\x00\x00\x01\xf4\xff",  # ABORT reason not UTF-8
        b"\x04\x00\x00\x00\x00\x00",  # CREDIT of a wrong size
        b"\x02\x00\x00\x00\x00x",  # END with a body
        b"\x05\x00\x00\x00\x00x",  # HEARTBEAT with a body
    ],
)
def test_malformed_frames_are_refused(payload: bytes) -> None:
    with pytest.raises(StreamError) as info:
        decode(payload)
    assert info.value.code == 502


@given(st.binary(max_size=40))
def test_decode_never_raises_anything_else(payload: bytes) -> None:
    with contextlib.suppress(StreamError):
        decode(payload)


def test_frame_data_size_fits_max_payload() -> None:
    assert frame_data_size(1024 * 1024) == 256 * 1024
    assert frame_data_size(8192) == 8192 - 1024
    assert frame_data_size(100) == 1


# --- one end's state -----------------------------------------------------------------


def _gateway_with_head(window: int = 100) -> StreamState:
    state = StreamState(is_gateway=True, window=window)
    assert state.receive(Frame(Kind.HEAD, 0, b"", 0)) is not None
    return state


def test_in_order_body_is_delivered_and_ends() -> None:
    state = _gateway_with_head()
    got = []
    for seq, chunk in enumerate([b"ab", b"cd"], start=1):
        frame = state.receive(Frame(Kind.DATA, seq, chunk))
        assert frame is not None
        got.append(frame.data)
    assert state.receive(Frame(Kind.END, 3)) is not None
    assert b"".join(got) == b"abcd"
    assert state.in_ended
    assert state.closed


def _feed(state: StreamState, seqs: list[int]) -> None:
    for seq in seqs:
        state.receive(Frame(Kind.DATA, seq, b"x"))


@pytest.mark.parametrize(
    ("seqs", "message"),
    [
        ([1, 3], "missing"),  # frame 2 dropped
        ([1, 1], "duplicate"),  # frame 1 twice
        ([2, 1], "missing"),  # reordered: 2 first
        ([1, 2, 1], "duplicate"),  # an old frame after newer ones
    ],
)
def test_loss_duplicate_and_reorder_abort(seqs: list[int], message: str) -> None:
    state = _gateway_with_head()
    with pytest.raises(StreamError) as info:
        _feed(state, seqs)
    assert info.value.code == 502
    assert message in info.value.reason
    assert not info.value.remote
    assert state.closed
    assert state.abort_error is info.value


def test_late_frames_after_abort_are_dropped() -> None:
    state = _gateway_with_head()
    with pytest.raises(StreamError):
        state.receive(Frame(Kind.DATA, 5, b"x"))
    assert state.receive(Frame(Kind.DATA, 1, b"x")) is None
    assert state.receive(Frame(Kind.END, 2)) is None
    assert state.receive(Frame(Kind.ABORT, 3, b"late", 500)) is None


def test_late_frames_after_the_end_are_dropped() -> None:
    state = _gateway_with_head()
    state.receive(Frame(Kind.END, 1))
    assert state.receive(Frame(Kind.DATA, 2, b"x")) is None
    assert state.receive(Frame(Kind.DATA, 1, b"x")) is None


def test_peer_abort_is_raised_as_remote() -> None:
    state = _gateway_with_head()
    with pytest.raises(StreamError) as info:
        state.receive(Frame(Kind.ABORT, 1, b"app failed", 500))
    assert info.value.remote
    assert info.value.code == 500
    assert info.value.reason == "app failed"


def test_first_abort_reason_stays() -> None:
    state = _gateway_with_head()
    first = state.fail(504, "idle")
    assert state.fail(499, "client gone") is first


def test_data_before_head_and_second_head_are_errors() -> None:
    state = StreamState(is_gateway=True)
    with pytest.raises(StreamError, match="before the HEAD"):
        state.receive(Frame(Kind.DATA, 0, b"x"))
    state = _gateway_with_head()
    with pytest.raises(StreamError, match="unexpected HEAD"):
        state.receive(Frame(Kind.HEAD, 1, b"", 0))


def test_consumer_refuses_head_and_body_when_request_was_whole() -> None:
    state = StreamState(is_gateway=False)
    with pytest.raises(StreamError, match="after the end"):
        state.receive(Frame(Kind.DATA, 1, b"x"))
    state = StreamState(is_gateway=False, body_streamed=True)
    with pytest.raises(StreamError, match="unexpected HEAD"):
        state.receive(Frame(Kind.HEAD, 1, b"", 0))


def test_head_with_fin_ends_the_body() -> None:
    state = StreamState(is_gateway=True)
    state.receive(Frame(Kind.HEAD, 0, b"", FIN))
    assert state.closed
    assert state.receive(Frame(Kind.DATA, 1, b"x")) is None


def test_sequence_numbers_start_per_side() -> None:
    gateway = StreamState(is_gateway=True)
    consumer = StreamState(is_gateway=False)
    assert [gateway.next_seq(), gateway.next_seq()] == [1, 2]
    assert [consumer.next_seq(), consumer.next_seq()] == [0, 1]


def test_sequence_numbers_never_wrap() -> None:
    state = StreamState(is_gateway=False)
    state.send_seq = 2**32 - 1
    assert state.next_seq() == 2**32 - 1
    with pytest.raises(StreamError, match="exhausted"):
        state.next_seq()


# --- credit ------------------------------------------------------------------------


def test_sender_is_held_to_the_credit() -> None:
    state = StreamState(is_gateway=False, peer_credit=10)
    assert state.sendable() == 10
    state.sent_data(7)
    assert state.sendable() == 3
    with pytest.raises(ValueError, match="beyond the credit"):
        state.sent_data(4)
    state.receive(Frame(Kind.CREDIT, 1, value=30))
    assert state.sendable() == 23


def test_credit_going_down_is_an_error() -> None:
    state = StreamState(is_gateway=False, peer_credit=10)
    with pytest.raises(StreamError, match="credit went down"):
        state.receive(Frame(Kind.CREDIT, 1, value=5))


def test_data_beyond_the_grant_aborts() -> None:
    state = _gateway_with_head(window=10)
    state.receive(Frame(Kind.DATA, 1, b"x" * 10))
    with pytest.raises(StreamError, match="beyond the credit"):
        state.receive(Frame(Kind.DATA, 2, b"y"))


def test_credit_is_granted_after_half_the_window_is_consumed() -> None:
    state = _gateway_with_head(window=100)
    state.receive(Frame(Kind.DATA, 1, b"x" * 100))
    assert state.consumed(49) is None
    assert state.consumed(1) == 150  # 50 taken: grant up to 50 + window
    state.receive(Frame(Kind.DATA, 2, b"y" * 50))
    assert state.consumed(49) is None
    assert state.consumed(50) == 249  # 149 taken
    assert state.granted == 249


def test_no_credit_after_the_body_ended() -> None:
    state = _gateway_with_head(window=10)
    state.receive(Frame(Kind.DATA, 1, b"x" * 10))
    state.receive(Frame(Kind.END, 2))
    assert state.consumed(10) is None


@given(
    body=st.binary(min_size=1, max_size=2000),
    frame_size=st.integers(1, 300),
    window=st.integers(1, 700),
    reads=st.lists(st.integers(1, 400), min_size=1, max_size=40),
)
def test_credit_accounting_moves_any_body(
    body: bytes, frame_size: int, window: int, reads: list[int]
) -> None:
    """A sender and a receiver exchanging credit move every body whole, never past it."""
    sender = StreamState(is_gateway=False, peer_credit=window)
    receiver = StreamState(is_gateway=True, window=window)
    receiver.receive(Frame(Kind.HEAD, sender.next_seq(), b"", 0))
    offset = 0
    buffered = bytearray()
    out = bytearray()
    turn = 0
    while len(out) < len(body):
        # the sender sends what the credit allows
        while offset < len(body) and sender.sendable():
            n = min(frame_size, sender.sendable(), len(body) - offset)
            frame = decode(encode_data(sender.next_seq(), body[offset : offset + n]))
            sender.sent_data(n)
            offset += n
            got = receiver.receive(frame)
            assert got is not None
            buffered += got.data
            assert len(buffered) <= window  # never more than the window held
        # the application reads some
        take = min(reads[turn % len(reads)], len(buffered))
        turn += 1
        out += buffered[:take]
        del buffered[:take]
        grant = receiver.consumed(take)
        if grant is not None:
            sender.receive(Frame(Kind.CREDIT, receiver.next_seq(), value=grant))
        assert take or buffered or sender.sendable(), "deadlock: no credit, nothing buffered"
    assert bytes(out) == body


@given(
    chunks=st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=12),
    faults=st.lists(
        st.tuples(st.sampled_from(["drop", "dup", "swap"]), st.integers(0, 20)),
        max_size=3,
    ),
)
def test_damaged_delivery_is_never_silently_accepted(
    chunks: list[bytes], faults: list[tuple[str, int]]
) -> None:
    """Whatever is dropped, duplicated or reordered: the body is whole, or an error."""
    frames = [Frame(Kind.HEAD, 0, b"", 0)]
    frames += [Frame(Kind.DATA, i, c) for i, c in enumerate(chunks, start=1)]
    frames.append(Frame(Kind.END, len(chunks) + 1))
    delivered = list(frames)
    for fault, at in faults:
        i = at % len(delivered)
        if fault == "drop":
            del delivered[i]
        elif fault == "dup":
            delivered.insert(i, delivered[i])
        elif i + 1 < len(delivered):
            delivered[i], delivered[i + 1] = delivered[i + 1], delivered[i]
    state = StreamState(is_gateway=True, window=10_000)
    body = bytearray()
    ended = False
    error: StreamError | None = None
    for frame in delivered:
        try:
            got = state.receive(frame)
        except StreamError as exc:
            error = exc
            break
        if got is None:
            continue
        if got.kind is Kind.DATA:
            body += got.data
        elif got.kind is Kind.END:
            ended = True
    if error is not None:
        assert error.code == 502
        assert state.closed
        return
    # No error: then the end was reached with exactly the body sent, or the damage
    # only touched frames after the end (dropped as late) or cut the tail (no END yet).
    whole = b"".join(chunks)
    if ended:
        assert bytes(body) == whole
    else:
        assert whole.startswith(bytes(body))
