"""gRPC control headers (narun.protocol.grpcwire): encodings, status mapping, Go replies."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from narun.errors import NarunError
from narun.protocol import grpcwire, wire
from narun.protocol.grpcwire import GRPCRequest, GRPCStatus, GRPCWireError, Metadatum, StatusCode

# -- strategies -----------------------------------------------------------------------

_key_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_.-")
text_keys = st.text(_key_chars, min_size=1, max_size=12).filter(lambda k: not k.endswith("-bin"))
bin_keys = st.text(_key_chars, min_size=1, max_size=8).map(lambda k: k + "-bin")
metadatum = st.one_of(
    st.tuples(text_keys, st.text(max_size=30)),
    st.tuples(bin_keys, st.binary(max_size=30)),
)
metadata = st.lists(metadatum, max_size=8).map(lambda items: tuple(Metadatum(*i) for i in items))

# One header value as nats-py would carry it: single line, printable ASCII, no edge spaces.
HEADER_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F))


def header_safe(value: str) -> bool:
    return all(c in HEADER_SAFE for c in value)


# -- text -----------------------------------------------------------------------------


@given(st.text())
def test_text_round_trips_and_is_header_safe(text: str) -> None:
    encoded = grpcwire.encode_text(text)
    assert header_safe(encoded)
    assert "," not in encoded
    assert grpcwire.decode_text(encoded) == text


def test_text_encoding_examples() -> None:
    assert grpcwire.encode_text("Name cannot be empty") == "Name%20cannot%20be%20empty"
    assert grpcwire.encode_text("a,b%c=d") == "a%2Cb%25c=d"
    assert grpcwire.encode_text("é\n") == "%C3%A9%0A"
    assert grpcwire.decode_text("%c3%a9") == "é"  # lower-case hex accepted


@pytest.mark.parametrize("bad", ["%", "%4", "%zz", "a b", "a,b", "%FF", "tab\there"])
def test_malformed_text_is_rejected(bad: str) -> None:
    for _ in range(2):  # also once seen (decoded texts are kept)
        with pytest.raises(GRPCWireError):
            grpcwire.decode_text(bad)
    with pytest.raises(GRPCWireError):
        grpcwire.decode_text(bad + "x" * 300)  # too long to be kept


@pytest.mark.parametrize("text", ["plain-token", "agent/1.0 (linux; x)", "déjà vu", "é" * 300])
def test_repeated_text_encodes_the_same(text: str) -> None:
    # Short texts are kept once encoded or decoded; long ones are not: same results.
    first = grpcwire.encode_text(text)
    assert grpcwire.encode_text(text) == first
    assert grpcwire.encode_text(text.encode()) == first
    assert grpcwire.decode_text(first) == grpcwire.decode_text(first) == text


# -- metadata -------------------------------------------------------------------------


@given(metadata)
def test_metadata_round_trips_in_order(md: tuple[Metadatum, ...]) -> None:
    encoded = grpcwire.encode_metadata(md)
    assert header_safe(encoded) or encoded == ""
    assert grpcwire.decode_metadata(encoded) == md


def test_metadata_encoding_example() -> None:
    md: list[tuple[str, str | bytes]] = [
        ("k", "v1"),
        ("k", "v 2"),
        ("trace-bin", b"\x00\xff"),
        ("Upper", "x"),
    ]
    encoded = grpcwire.encode_metadata(md)
    assert encoded == "k=v1,k=v%202,trace-bin=AP8,upper=x"
    assert grpcwire.decode_metadata(encoded) == (
        ("k", "v1"),
        ("k", "v 2"),
        ("trace-bin", b"\x00\xff"),
        ("upper", "x"),
    )
    assert grpcwire.decode_metadata("trace-bin=AP8=") == (("trace-bin", b"\x00\xff"),)
    assert grpcwire.decode_metadata("") == ()


def test_decoded_items_look_like_grpcio_metadata() -> None:
    (item,) = grpcwire.decode_metadata("a=b")
    assert item.key == "a"
    assert item.value == "b"
    assert dict(grpcwire.decode_metadata("a=b,c=d")) == {"a": "b", "c": "d"}


@pytest.mark.parametrize("key", ["", "a b", "ключ", "a/b", "a:b"])
def test_encoder_rejects_invalid_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid gRPC metadata key"):
        grpcwire.encode_metadata([(key, "v")])


@pytest.mark.parametrize(
    "bad",
    ["novalue", "=v", "A=v", "a=v,", ",a=v", "a=%zz", "x-bin=!!", "x-bin=A", "x-bin=A=B"],
)
def test_malformed_metadata_is_rejected(bad: str) -> None:
    with pytest.raises(GRPCWireError):
        grpcwire.decode_metadata(bad)


def test_forwardable_drops_transport_keys_and_keeps_user_agent() -> None:
    md: list[tuple[str, str | bytes]] = [
        (":authority", "x"),
        ("grpc-timeout", "1S"),
        ("grpc-accept-encoding", "gzip"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("connection", "close"),
        ("user-agent", "grpc-python/1"),
        ("k", "v"),
        ("bad key", "v"),
        ("text", "line\nbreak"),
        ("data-bin", b"\x01"),
        ("data-bin", "not bytes"),
        ("plain", b"bytes for a text key"),
    ]
    assert grpcwire.forwardable(md) == (
        ("user-agent", "grpc-python/1"),
        ("k", "v"),
        ("data-bin", b"\x01"),
    )


# -- requests -------------------------------------------------------------------------


def test_request_headers_round_trip() -> None:
    headers = grpcwire.encode_request(
        method="/hello.v1.Greeter/SayHello",
        metadata=[("k", "v"), ("k-bin", b"\x00")],
        timeout=1.2341,
        client_addr="127.0.0.1:5000",
    )
    assert headers == {
        "X-Original-Grpc-Method": "/hello.v1.Greeter/SayHello",
        "Narun-Timeout-Ms": "1235",
        "Narun-Client-Addr": "127.0.0.1:5000",
        "Narun-Grpc-Metadata": "k=v,k-bin=AA",
    }
    assert grpcwire.decode_request(headers) == GRPCRequest(
        method="/hello.v1.Greeter/SayHello",
        metadata=(Metadatum("k", "v"), Metadatum("k-bin", b"\x00")),
        timeout=1.235,
        client_addr="127.0.0.1:5000",
    )


def test_go_request_has_only_the_method() -> None:
    headers = grpcwire.encode_request(method="/a.B/C")
    assert headers == {wire.GRPC_METHOD: "/a.B/C"}
    assert grpcwire.decode_request(headers) == GRPCRequest(method="/a.B/C")
    assert grpcwire.decode_request(None) == GRPCRequest(method=None)
    assert grpcwire.decode_request({"Other": "x"}).method is None


def test_request_with_bad_metadata_is_rejected() -> None:
    with pytest.raises(GRPCWireError):
        grpcwire.decode_request({wire.GRPC_METHOD: "/a.B/C", wire.GRPC_METADATA: "x"})


# -- replies --------------------------------------------------------------------------


@given(
    st.sampled_from(StatusCode),
    st.text(max_size=40),
    metadata,
    metadata,
)
def test_reply_round_trips(
    code: StatusCode, message: str, initial: grpcwire.Metadata, trailing: grpcwire.Metadata
) -> None:
    status = GRPCStatus(code, message if code != StatusCode.OK else "", initial, trailing)
    headers = grpcwire.encode_reply(status)
    assert all(header_safe(v) or v == "" for k, v in headers.items() if k != wire.SERVICE_ERROR)
    assert grpcwire.decode_reply(headers) == status


def test_error_reply_also_carries_adr32_headers_with_generic_text() -> None:
    headers = grpcwire.encode_reply(
        GRPCStatus(StatusCode.INVALID_ARGUMENT, "secret-ish detail, for the client")
    )
    assert headers[wire.GRPC_STATUS] == "3"
    assert headers[wire.SERVICE_ERROR_CODE] == "3"
    assert headers[wire.SERVICE_ERROR] == "gRPC status INVALID_ARGUMENT"
    assert "detail" not in headers[wire.SERVICE_ERROR]
    ok = grpcwire.encode_reply(GRPCStatus())
    assert ok == {wire.GRPC_STATUS: "0"}


def test_go_success_reply_is_ok() -> None:
    assert grpcwire.decode_reply(None) == GRPCStatus()
    assert grpcwire.decode_reply({}) == GRPCStatus()


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (
            "3",
            "Name cannot be empty",
            GRPCStatus(StatusCode.INVALID_ARGUMENT, "Name cannot be empty"),
        ),
        ("16", "who are you", GRPCStatus(StatusCode.UNAUTHENTICATED, "who are you")),
        (
            "501",
            "Method /x/y not implemented",
            GRPCStatus(StatusCode.UNIMPLEMENTED, "Method not implemented by the backend service"),
        ),
        (
            "500",
            "Internal server error: boom",
            GRPCStatus(StatusCode.UNKNOWN, "Backend service error"),
        ),
        (
            "400",
            "Missing required header",
            GRPCStatus(StatusCode.INTERNAL, "Backend service error"),
        ),
        ("0", "odd", GRPCStatus(StatusCode.INTERNAL, "Backend service error")),
        ("17", "future", GRPCStatus(StatusCode.INTERNAL, "Backend service error")),
        ("", "no code", GRPCStatus(StatusCode.INTERNAL, "Backend service error")),
    ],
)
def test_go_error_replies(code: str, text: str, expected: GRPCStatus) -> None:
    headers = {wire.SERVICE_ERROR: text, wire.SERVICE_ERROR_CODE: code}
    assert grpcwire.decode_reply(headers) == expected


def test_narun_status_wins_over_adr32_headers() -> None:
    headers = {
        wire.GRPC_STATUS: "5",
        wire.GRPC_MESSAGE: "not%20here",
        wire.SERVICE_ERROR: "gRPC status NOT_FOUND",
        wire.SERVICE_ERROR_CODE: "5",
    }
    assert grpcwire.decode_reply(headers) == GRPCStatus(StatusCode.NOT_FOUND, "not here")


@pytest.mark.parametrize(
    "headers",
    [
        {wire.GRPC_STATUS: "17"},
        {wire.GRPC_STATUS: "-1"},
        {wire.GRPC_STATUS: "OK"},
        {wire.GRPC_STATUS: "3", wire.GRPC_MESSAGE: "%zz"},
        {wire.GRPC_STATUS: "0", wire.GRPC_TRAILING_METADATA: "nope"},
        {wire.GRPC_INITIAL_METADATA: "A=b"},
    ],
)
def test_malformed_replies_raise(headers: dict[str, str]) -> None:
    with pytest.raises(GRPCWireError) as info:
        grpcwire.decode_reply(headers)
    assert info.value.grpc_code == "INTERNAL"


# -- names ----------------------------------------------------------------------------


def test_status_codes_are_grpcios() -> None:
    assert [(c.name, c.value) for c in StatusCode] == [
        (c.name, c.value[0]) for c in grpc.StatusCode
    ]
    assert StatusCode(14) is StatusCode.UNAVAILABLE
    assert str(StatusCode.UNAVAILABLE) == "14"  # as Narun-Grpc-Status carries it


def test_code_name_of_an_int() -> None:
    assert grpcwire.code_name(14) == "UNAVAILABLE"
    assert grpcwire.code_name(StatusCode.OK) == "OK"
    assert all(grpcwire.code_name(code) == code.name for code in StatusCode)
    assert grpcwire.code_name(17) == grpcwire.code_name(-1) == "UNKNOWN"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("0", StatusCode.OK),
        ("14", StatusCode.UNAVAILABLE),
        ("16", StatusCode.UNAUTHENTICATED),
        ("04", StatusCode.DEADLINE_EXCEEDED),
        ("00", StatusCode.OK),
        (" 4", None),
        ("4 ", None),
        ("\u0664", None),  # ARABIC-INDIC DIGIT FOUR: a digit, not ASCII
        ("17", None),
        ("99", None),
        ("-1", None),
        ("", None),
        ("014", None),
        ("OK", None),
    ],
)
def test_status_code_parse(value: str, code: StatusCode | None) -> None:
    assert StatusCode.parse(value) is code


def _error_classes(cls: type[NarunError]) -> list[type[NarunError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _error_classes(sub))]


def test_every_error_names_a_status_code() -> None:
    classes = _error_classes(NarunError)
    assert GRPCWireError in classes
    assert len(classes) > 10
    for cls in classes:
        assert cls.grpc_code in StatusCode.__members__, cls


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("/hello.v1.Greeter/SayHello", ("hello.v1.Greeter", "SayHello")),
        ("/Svc/M", ("Svc", "M")),
        ("hello.v1.Greeter/SayHello", None),
        ("/hello.v1.Greeter", None),
        ("/hello.v1.Greeter/", None),
        ("//M", None),
        ("/a/b/c", None),
    ],
)
def test_split_method(method: str, expected: tuple[str, str] | None) -> None:
    assert grpcwire.split_method(method) == expected


def test_peer_addresses() -> None:
    assert grpcwire.peer_address("ipv4:127.0.0.1:5000") == "127.0.0.1:5000"
    assert grpcwire.peer_address("ipv6:[::1]:5000") == "[::1]:5000"
    assert grpcwire.peer_address("unix:/tmp/sock") is None
    # What grpcio's context.peer() really returns for an IPv6 client: brackets encoded.
    assert grpcwire.peer_address("ipv6:%5B::1%5D:35440") == "[::1]:35440"
    assert grpcwire.peer_address("ipv6:%5Bfe80::1%25eth0%5D:80") == "[fe80::1%eth0]:80"
    assert grpcwire.peer_from_address("127.0.0.1:5000") == "ipv4:127.0.0.1:5000"
    assert grpcwire.peer_from_address("[::1]:5000") == "ipv6:%5B::1%5D:5000"
    for addr in ("127.0.0.1:5000", "[::1]:5000", "[fe80::1%eth0]:80"):
        assert grpcwire.peer_address(grpcwire.peer_from_address(addr)) == addr
    assert grpcwire.peer_from_address(None) == "unknown"
