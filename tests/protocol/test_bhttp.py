"""Tests for narun.protocol.bhttp: RFC 9292 vectors, Go-narun-shaped messages, malformed input."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from narun.errors import BinaryHTTPError
from narun.protocol.bhttp import (
    Headers,
    InformationalResponse,
    Request,
    Response,
    _varint,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


# ------------------------------------------------------------------ RFC 9292 section 5.1

RFC_REQUEST_KNOWN = _hex(
    """
    00034745 54056874 74707300 0a2f6865
    6c6c6f2e 74787440 6c0a7573 65722d61
    67656e74 34637572 6c2f372e 31362e33
    206c6962 6375726c 2f372e31 362e3320
    4f70656e 53534c2f 302e392e 376c207a
    6c69622f 312e322e 3304686f 73740f77
    77772e65 78616d70 6c652e63 6f6d0f61
    63636570 742d6c61 6e677561 67650665
    6e2c206d 690000
    """
)

RFC_REQUEST_INDETERMINATE = _hex(
    """
    02034745 54056874 74707300 0a2f6865
    6c6c6f2e 7478740a 75736572 2d616765
    6e743463 75726c2f 372e3136 2e33206c
    69626375 726c2f37 2e31362e 33204f70
    656e5353 4c2f302e 392e376c 207a6c69
    622f312e 322e3304 686f7374 0f777777
    2e657861 6d706c65 2e636f6d 0f616363
    6570742d 6c616e67 75616765 06656e2c
    206d6900 00000000 00000000 00000000
    """
)

RFC_REQUEST = Request(
    method="GET",
    scheme="https",
    authority="",
    path="/hello.txt",
    headers=(
        (b"user-agent", b"curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"),
        (b"host", b"www.example.com"),
        (b"accept-language", b"en, mi"),
    ),
)

# Framing indicator, method, scheme, empty authority, path: 1 + 4 + 6 + 1 + 11 bytes.
RFC_REQUEST_CONTROL_END = 23

# ------------------------------------------------------------------ RFC 9292 section 5.2

RFC_RESPONSE_INDETERMINATE = _hex(
    """
    03406607 72756e6e 696e670a 22736c65
    65702031 35220040 67046c69 6e6b233c
    2f737479 6c652e63 73733e3b 2072656c
    3d707265 6c6f6164 3b206173 3d737479
    6c65046c 696e6b24 3c2f7363 72697074
    2e6a733e 3b207265 6c3d7072 656c6f61
    643b2061 733d7363 72697074 0040c804
    64617465 1d4d6f6e 2c203237 204a756c
    20323030 39203132 3a32383a 35332047
    4d540673 65727665 72064170 61636865
    0d6c6173 742d6d6f 64696669 65641d57
    65642c20 3232204a 756c2032 30303920
    31393a31 353a3536 20474d54 04657461
    67142233 34616133 38372d64 2d313536
    38656230 30220d61 63636570 742d7261
    6e676573 05627974 65730e63 6f6e7465
    6e742d6c 656e6774 68023531 04766172
    790f4163 63657074 2d456e63 6f64696e
    670c636f 6e74656e 742d7479 70650a74
    6578742f 706c6169 6e003348 656c6c6f
    20576f72 6c642120 4d792063 6f6e7465
    6e742069 6e636c75 64657320 61207472
    61696c69 6e672043 524c462e 0d0a0000
    """
)

RFC_RESPONSE = Response(
    status=200,
    headers=(
        (b"date", b"Mon, 27 Jul 2009 12:28:53 GMT"),
        (b"server", b"Apache"),
        (b"last-modified", b"Wed, 22 Jul 2009 19:15:56 GMT"),
        (b"etag", b'"34aa387-d-1568eb00"'),
        (b"accept-ranges", b"bytes"),
        (b"content-length", b"51"),
        (b"vary", b"Accept-Encoding"),
        (b"content-type", b"text/plain"),
    ),
    content=b"Hello World! My content includes a trailing CRLF.\r\n",
    informational=(
        InformationalResponse(102, ((b"running", b'"sleep 15"'),)),
        InformationalResponse(
            103,
            (
                (b"link", b"</style.css>; rel=preload; as=style"),
                (b"link", b"</script.js>; rel=preload; as=script"),
            ),
        ),
    ),
)

RFC_CHUNKED_RESPONSE_KNOWN = _hex(
    """
    0140c800 1d546869 7320636f 6e74656e
    7420636f 6e746169 6e732043 524c462e
    0d0a0d07 74726169 6c657204 74657874
    """
)

RFC_CHUNKED_RESPONSE = Response(
    status=200,
    content=b"This content contains CRLF.\r\n",
    trailers=((b"trailer", b"text"),),
)

# RFC 9458 appendix A: a request truncated right after its control data, and a
# response that is nothing but a status code.
RFC9458_REQUEST = _hex("00034745540568747470730b6578616d706c652e636f6d012f")
RFC9458_RESPONSE = _hex("0140c8")


def test_rfc_known_length_request_decodes() -> None:
    assert decode_request(RFC_REQUEST_KNOWN) == RFC_REQUEST


def test_rfc_known_length_request_encodes() -> None:
    assert encode_request(RFC_REQUEST) == RFC_REQUEST_KNOWN


def test_rfc_indeterminate_request_decodes_with_its_padding() -> None:
    assert decode_request(RFC_REQUEST_INDETERMINATE) == RFC_REQUEST


def test_rfc_indeterminate_request_encodes_without_padding() -> None:
    assert encode_request(RFC_REQUEST, indeterminate=True) == RFC_REQUEST_INDETERMINATE[:-10]


def test_rfc_response_with_informationals_decodes() -> None:
    assert decode_response(RFC_RESPONSE_INDETERMINATE) == RFC_RESPONSE


def test_rfc_response_with_informationals_encodes() -> None:
    assert encode_response(RFC_RESPONSE, indeterminate=True) == RFC_RESPONSE_INDETERMINATE


def test_rfc_known_length_response_with_trailer() -> None:
    assert decode_response(RFC_CHUNKED_RESPONSE_KNOWN) == RFC_CHUNKED_RESPONSE
    assert encode_response(RFC_CHUNKED_RESPONSE) == RFC_CHUNKED_RESPONSE_KNOWN


def test_rfc9458_truncated_vectors() -> None:
    request = Request("GET", "https", "example.com", "/")
    assert decode_request(RFC9458_REQUEST) == request
    assert encode_request(request) == RFC9458_REQUEST + b"\x00\x00\x00"
    assert decode_response(RFC9458_RESPONSE) == Response(200)
    assert encode_response(Response(200)) == RFC9458_RESPONSE + b"\x00\x00\x00"


def test_decoders_accept_bytearray_and_memoryview() -> None:
    assert decode_request(bytearray(RFC_REQUEST_KNOWN)) == RFC_REQUEST
    assert decode_request(memoryview(RFC_REQUEST_KNOWN)) == RFC_REQUEST
    assert decode_response(memoryview(RFC_RESPONSE_INDETERMINATE)) == RFC_RESPONSE
    assert decode_response(bytearray(RFC_CHUNKED_RESPONSE_KNOWN)) == RFC_CHUNKED_RESPONSE


# ------------------------------------------------------------------ truncation, padding


def _accepted_prefixes(data: bytes, decode: Callable[[bytes], object]) -> set[int]:
    accepted: set[int] = set()
    for k in range(len(data) + 1):
        try:
            decode(data[:k])
        except BinaryHTTPError:
            continue
        accepted.add(k)
    return accepted


def test_known_length_request_truncates_only_at_section_boundaries() -> None:
    n = len(RFC_REQUEST_KNOWN)
    accepted = _accepted_prefixes(RFC_REQUEST_KNOWN, decode_request)
    assert accepted == {RFC_REQUEST_CONTROL_END, n - 2, n - 1, n}
    bare = Request("GET", "https", "", "/hello.txt")
    assert decode_request(RFC_REQUEST_KNOWN[:RFC_REQUEST_CONTROL_END]) == bare
    assert decode_request(RFC_REQUEST_KNOWN[:-1]) == RFC_REQUEST
    assert decode_request(RFC_REQUEST_KNOWN[:-2]) == RFC_REQUEST


def test_indeterminate_request_truncates_only_at_section_boundaries() -> None:
    n = len(RFC_REQUEST_INDETERMINATE) - 10
    accepted = _accepted_prefixes(RFC_REQUEST_INDETERMINATE, decode_request)
    padded = set(range(n, n + 11))
    assert accepted == {RFC_REQUEST_CONTROL_END, n - 2, n - 1} | padded
    for k in (n - 2, n - 1):
        assert decode_request(RFC_REQUEST_INDETERMINATE[:k]) == RFC_REQUEST


def test_indeterminate_response_truncates_only_at_section_boundaries() -> None:
    data = RFC_RESPONSE_INDETERMINATE
    final_status_end = data.index(b"\x40\xc8") + 2
    header_end = data.index(b"text/plain\x00") + len(b"text/plain\x00")
    n = len(data)
    accepted = _accepted_prefixes(data, decode_response)
    assert accepted == {final_status_end, header_end, n - 1, n}
    assert decode_response(data[:final_status_end]).headers == ()
    assert decode_response(data[:header_end]).content == b""
    assert decode_response(data[:-1]) == RFC_RESPONSE


def test_known_length_response_truncation() -> None:
    data = RFC_CHUNKED_RESPONSE_KNOWN
    accepted = _accepted_prefixes(data, decode_response)
    # After the status, after the empty header section, after the content, or whole.
    assert accepted == {3, 4, 34, len(data)}
    assert decode_response(data[:34]) == Response(200, content=b"This content contains CRLF.\r\n")


@pytest.mark.parametrize("pad", [1, 2, 7, 100])
def test_zero_padding_is_ignored(pad: int) -> None:
    zeros = bytes(pad)
    assert decode_request(RFC_REQUEST_KNOWN + zeros) == RFC_REQUEST
    assert decode_request(RFC_REQUEST_INDETERMINATE + zeros) == RFC_REQUEST
    assert decode_response(RFC_RESPONSE_INDETERMINATE + zeros) == RFC_RESPONSE
    assert decode_response(RFC_CHUNKED_RESPONSE_KNOWN + zeros) == RFC_CHUNKED_RESPONSE
    assert decode_request(RFC9458_REQUEST + zeros) == Request("GET", "https", "example.com", "/")
    assert decode_response(RFC9458_RESPONSE + zeros) == Response(200)


def test_decoders_accept_non_minimal_varints() -> None:
    # Framing indicator 0 in two bytes, method length 3 in four, scheme length in eight,
    # path length in two, empty header section length in two, content length 2 in four.
    data = (
        b"\x40\x00"
        + b"\x80\x00\x00\x03GET"
        + b"\xc0\x00\x00\x00\x00\x00\x00\x05https"
        + b"\x00"
        + b"\x40\x01/"
        + b"\x40\x00"
        + b"\x80\x00\x00\x02hi"
    )
    assert decode_request(data) == Request("GET", "https", "", "/", content=b"hi")
    # Indeterminate response: status 204 in eight bytes, terminators in two bytes.
    data = b"\x03\xc0\x00\x00\x00\x00\x00\x00\xcc" + b"\x40\x00" * 3
    assert decode_response(data) == Response(204)


def test_known_length_empty_field_name_is_rejected() -> None:
    # Found by `make fuzz`: it decoded, but could not be encoded again.
    data = b"\x00\x03GET\x00\x00\x01/" + b"\x03\x00\x01v" + b"\x00\x00"
    with pytest.raises(BinaryHTTPError, match="empty field name"):
        decode_request(data)


def test_field_names_keep_their_case_on_decode() -> None:
    data = b"\x01\x40\xc8" + b"\x08\x06X-Test\x00" + b"\x00\x00"
    assert decode_response(data).headers == ((b"X-Test", b""),)


# ------------------------------------------------------------------ Go narun shapes


def test_go_narun_known_length_request() -> None:
    data = (
        b"\x00"  # known-length request
        + b"\x04POST"
        + b"\x00"  # empty scheme
        + b"\x0elocalhost:8080"  # authority = Host
        + b"\x0b/hello/?a=1"
        + b"\x40\x59"  # header section: 89 bytes, sorted lower-case names
        + b"\x06accept\x03*/*"
        + b"\x0econtent-length\x0213"
        + b"\x0ccontent-type\x10application/json"
        + b"\x0auser-agent\x12Go-http-client/1.1"
        + b"\x0d"
        + b'{"name":"go"}'
        + b"\x00"  # empty trailer section
    )
    expected = Request(
        method="POST",
        scheme="",
        authority="localhost:8080",
        path="/hello/?a=1",
        headers=(
            (b"accept", b"*/*"),
            (b"content-length", b"13"),
            (b"content-type", b"application/json"),
            (b"user-agent", b"Go-http-client/1.1"),
        ),
        content=b'{"name":"go"}',
    )
    assert decode_request(data) == expected
    assert decode_request(data[:-1]) == expected
    assert encode_request(expected) == data


def test_go_narun_indeterminate_response_in_4094_byte_chunks() -> None:
    body = (bytes(range(256)) * 40)[:10000]
    data = (
        b"\x03"  # indeterminate response
        + b"\x40\xc8"  # 200
        + b"\x0ccontent-type\x18application/octet-stream"
        + b"\x04date\x1dMon, 27 Jul 2009 12:28:53 GMT"
        + b"\x00"  # end of header section
        + b"\x4f\xfe"  # 4094
        + body[:4094]
        + b"\x4f\xfe"  # 4094
        + body[4094:8188]
        + b"\x47\x14"  # 1812
        + body[8188:]
        + b"\x00"  # end of content
        + b"\x00"  # empty trailer section
    )
    expected = Response(
        status=200,
        headers=(
            (b"content-type", b"application/octet-stream"),
            (b"date", b"Mon, 27 Jul 2009 12:28:53 GMT"),
        ),
        content=body,
    )
    assert decode_response(data) == expected
    again = encode_response(expected, indeterminate=True)
    assert b"\x67\x10" + body + b"\x00\x00" in again  # one 10000-byte chunk
    assert decode_response(again) == expected


# ------------------------------------------------------------------ encoder details


@pytest.mark.parametrize(
    ("size", "prefix"),
    [
        (0, b"\x00"),
        (63, b"\x3f"),
        (64, b"\x40\x40"),
        (16383, b"\x7f\xff"),
        (16384, b"\x80\x00\x40\x00"),
    ],
)
def test_content_length_uses_shortest_varint(size: int, prefix: bytes) -> None:
    encoded = encode_response(Response(200, content=bytes(size)))
    assert encoded == b"\x01\x40\xc8\x00" + prefix + bytes(size) + b"\x00"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (37, b"\x25"),
        (15293, b"\x7b\xbd"),
        (494878333, b"\x9d\x7f\x3e\x7d"),
        ((1 << 30) - 1, b"\xbf\xff\xff\xff"),
        (1 << 30, b"\xc0\x00\x00\x00\x40\x00\x00\x00"),
        (151288809941952652, b"\xc2\x19\x7c\x5e\xff\x14\xe8\x8c"),
        ((1 << 62) - 1, b"\xff" * 8),
    ],
)
def test_varint_forms(value: int, encoded: bytes) -> None:
    assert _varint(value) == encoded


def test_varint_too_large() -> None:
    with pytest.raises(BinaryHTTPError):
        _varint(1 << 62)


@pytest.mark.parametrize(
    "response",
    [
        Response(199),
        Response(600),
        Response(100),
        Response(200, informational=(InformationalResponse(200),)),
        Response(200, informational=(InformationalResponse(99),)),
        Response(200, headers=((b"", b"x"),)),
    ],
)
@pytest.mark.parametrize("indeterminate", [False, True])
def test_encode_response_rejects(response: Response, indeterminate: bool) -> None:
    with pytest.raises(BinaryHTTPError):
        encode_response(response, indeterminate=indeterminate)


@pytest.mark.parametrize(
    "request_",
    [
        Request("GÉT", "https", "", "/"),
        Request("GET", "httpś", "", "/"),
        Request("GET", "https", "exämple.com", "/"),
        Request("GET", "https", "", "/\u20ac"),  # the path holds bytes: up to U+00FF
        Request("GET", "https", "", "/", trailers=((b"", b""),)),
    ],
)
@pytest.mark.parametrize("indeterminate", [False, True])
def test_encode_request_rejects(request_: Request, indeterminate: bool) -> None:
    with pytest.raises(BinaryHTTPError):
        encode_request(request_, indeterminate=indeterminate)


# ------------------------------------------------------------------ malformed input

_GET = b"\x03GET\x05https\x00\x01/"  # request control data

MALFORMED_REQUESTS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x04", id="framing-4"),
    pytest.param(b"\x3f", id="framing-63"),
    pytest.param(b"\x40\x05", id="framing-5-two-bytes"),
    pytest.param(b"\x80\x00", id="framing-truncated-varint"),
    pytest.param(b"\x01" + _GET, id="response-framing"),
    pytest.param(b"\x03" + _GET, id="indeterminate-response-framing"),
    pytest.param(b"\x00", id="no-control-data"),
    pytest.param(b"\x00\x03GE", id="method-truncated"),
    pytest.param(b"\x00\x03GET\x05https\x00", id="path-missing"),
    pytest.param(b"\x00\x03GET\x05https\x00\x05/", id="path-past-end"),
    pytest.param(b"\x00\x03G\xc3\xa9\x05https\x00\x01/", id="method-non-ascii"),
    pytest.param(b"\x00\x03GET\x05https\x02\x80a\x01/", id="authority-non-ascii"),
    pytest.param(b"\x00" + _GET + b"\x40", id="header-length-truncated-2"),
    pytest.param(b"\x00" + _GET + b"\x80\x00", id="header-length-truncated-4"),
    pytest.param(b"\x00" + _GET + b"\xc0\x00\x00", id="header-length-truncated-8"),
    pytest.param(b"\x00" + _GET + b"\x10\x01a\x01b", id="header-section-past-end"),
    pytest.param(b"\x00" + _GET + b"\x03\x01a\x05hello\x00\x00", id="line-overruns-section"),
    pytest.param(b"\x00" + _GET + b"\x02\x05a\x00\x00\x00", id="name-overruns-section"),
    pytest.param(b"\x00" + _GET + b"\x02\x01a\x00\x00", id="value-length-outside-section"),
    pytest.param(b"\x00" + _GET + b"\x03\x01a\x40\x00\x00", id="value-varint-overruns"),
    pytest.param(b"\x00" + _GET + b"\x00\x05abc", id="content-past-end"),
    pytest.param(b"\x00" + _GET + b"\x00" + b"\xff" * 8, id="content-length-huge"),
    pytest.param(b"\x00" + _GET + b"\x00\x00\x05\x01a", id="trailers-past-end"),
    pytest.param(b"\x00" + _GET + b"\x00\x00\x00\x01", id="trailing-garbage"),
    pytest.param(b"\x00" + _GET + b"\x00\x00\x00\x00\x00\x07", id="garbage-after-padding"),
    pytest.param(b"\x02" + _GET + b"\x01a", id="open-section-name-then-end"),
    pytest.param(b"\x02" + _GET + b"\x01a\x01b", id="open-section-no-terminator"),
    pytest.param(b"\x02" + _GET + b"\x05ab", id="open-section-name-past-end"),
    pytest.param(b"\x02" + _GET + b"\x01a\x05bc\x00", id="open-section-value-past-end"),
    pytest.param(b"\x02" + _GET + b"\x00\x05abc", id="chunk-past-end"),
    pytest.param(b"\x02" + _GET + b"\x00\x03abc", id="chunks-no-terminator"),
    pytest.param(b"\x02" + _GET + b"\x00\x03abc\x02de", id="chunks-then-end"),
    pytest.param(b"\x02" + _GET + b"\x00\x00\x01a\x00", id="trailer-no-terminator"),
    pytest.param(b"\x02" + _GET + b"\x00\x00\x00\x02", id="indeterminate-garbage"),
    pytest.param(b"\x02" + _GET + b"\x00\x40", id="chunk-length-truncated"),
]


@pytest.mark.parametrize("data", MALFORMED_REQUESTS)
def test_malformed_request_raises(data: bytes) -> None:
    with pytest.raises(BinaryHTTPError):
        decode_request(data)


MALFORMED_RESPONSES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"\x00\x40\xc8", id="request-framing"),
    pytest.param(b"\x02\x40\xc8", id="indeterminate-request-framing"),
    pytest.param(b"\x05\x40\xc8", id="framing-5"),
    pytest.param(b"\x01", id="no-status"),
    pytest.param(b"\x01\x00", id="status-0"),
    pytest.param(b"\x01\x40\x63", id="status-99"),
    pytest.param(b"\x01\x42\x58", id="status-600"),
    pytest.param(b"\x01\x43\xe8", id="status-1000"),
    pytest.param(b"\x01\x40", id="status-truncated"),
    pytest.param(b"\x01\x40\x64", id="informational-then-end"),
    pytest.param(b"\x01\x40\x64\x00", id="informational-without-final"),
    pytest.param(b"\x01\x40\x64\x05\x01a", id="informational-section-past-end"),
    pytest.param(b"\x01\x40\x64\x00\x40\x63\x00", id="second-status-99"),
    pytest.param(b"\x03\x40\x64", id="open-informational-then-end"),
    pytest.param(b"\x03\x40\x64\x01a\x01b", id="open-informational-unterminated"),
    pytest.param(b"\x03\x40\x64\x00", id="open-informational-without-final"),
    pytest.param(b"\x01\x40\xc8\x05\x01a", id="header-section-past-end"),
    pytest.param(b"\x01\x40\xc8\x00\x09abc", id="content-past-end"),
    pytest.param(b"\x01\x40\xc8\x00\x00\x00\x2a", id="trailing-garbage"),
    pytest.param(b"\x03\x40\xc8\x00\x02ab", id="chunks-no-terminator"),
    pytest.param(b"\x03\x40\xc8\x00\x00\x01x", id="trailer-name-then-end"),
    pytest.param(b"\x03\x40\xc8\x00\x00\x00\x00\xff", id="indeterminate-garbage"),
]


@pytest.mark.parametrize("data", MALFORMED_RESPONSES)
def test_malformed_response_raises(data: bytes) -> None:
    with pytest.raises(BinaryHTTPError):
        decode_response(data)


def test_error_is_a_value_error_with_a_cause() -> None:
    with pytest.raises(ValueError, match="malformed request") as info:
        decode_request(b"\x00\x03GET")
    assert isinstance(info.value.__cause__, IndexError)


# ------------------------------------------------------------------ property tests

_TCHAR = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ascii = st.text(alphabet=st.characters(max_codepoint=127), max_size=40)
_field = st.one_of(
    st.tuples(st.binary(min_size=1, max_size=70), st.binary(max_size=100)),
    st.tuples(st.just(b"set-cookie"), st.binary(max_size=30)),
)
_fields: st.SearchStrategy[Headers] = st.lists(_field, max_size=8).map(tuple)
_content = st.one_of(
    st.binary(max_size=300),
    st.integers(min_value=16380, max_value=16390).map(lambda n: b"\xab" * n),
)

requests = st.builds(
    Request,
    method=st.text(alphabet=_TCHAR, min_size=1, max_size=12),
    scheme=_ascii,
    authority=_ascii,
    path=st.text(alphabet=st.characters(max_codepoint=255), max_size=40),  # bytes as latin-1
    headers=_fields,
    content=_content,
    trailers=_fields,
)
responses = st.builds(
    Response,
    status=st.integers(min_value=200, max_value=599),
    headers=_fields,
    content=_content,
    trailers=_fields,
    informational=st.lists(
        st.builds(
            InformationalResponse,
            status=st.integers(min_value=100, max_value=199),
            headers=_fields,
        ),
        max_size=3,
    ).map(tuple),
)


@settings(database=None, max_examples=300)
@given(requests, st.booleans(), st.integers(min_value=0, max_value=5))
def test_request_round_trip(request: Request, indeterminate: bool, pad: int) -> None:
    data = encode_request(request, indeterminate=indeterminate)
    assert data[0] == (2 if indeterminate else 0)
    assert decode_request(data) == request
    assert decode_request(data + bytes(pad)) == request
    assert decode_request(bytearray(data)) == request


@settings(database=None, max_examples=300)
@given(responses, st.booleans(), st.integers(min_value=0, max_value=5))
def test_response_round_trip(response: Response, indeterminate: bool, pad: int) -> None:
    data = encode_response(response, indeterminate=indeterminate)
    assert data[0] == (3 if indeterminate else 1)
    assert decode_response(data) == response
    assert decode_response(data + bytes(pad)) == response
    assert decode_response(memoryview(data)) == response


@settings(database=None, max_examples=300)
@given(requests, st.booleans())
def test_empty_trailing_sections_may_be_truncated(request: Request, indeterminate: bool) -> None:
    bare = Request(request.method, request.scheme, request.authority, request.path)
    data = encode_request(bare, indeterminate=indeterminate)
    for cut in (1, 2, 3):
        assert decode_request(data[:-cut]) == bare


def _decodes_or_rejects(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(BinaryHTTPError):
            decode(data)


@settings(database=None, max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    _decodes_or_rejects(data)


@settings(database=None, max_examples=500)
@given(st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x03"]), st.binary(max_size=200))
def test_arbitrary_bytes_after_a_valid_framing(framing: bytes, rest: bytes) -> None:
    _decodes_or_rejects(framing + rest)


@settings(database=None, max_examples=300)
@given(
    st.one_of(
        st.builds(encode_request, requests, indeterminate=st.booleans()),
        st.builds(encode_response, responses, indeterminate=st.booleans()),
    ),
    st.data(),
)
def test_mutated_and_truncated_encodings(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(min_value=0, max_value=len(data)))
    _decodes_or_rejects(data[:cut])
    pos = draw.draw(st.integers(min_value=0, max_value=len(data) - 1))
    byte = draw.draw(st.integers(min_value=0, max_value=255))
    mutated = data[:pos] + bytes((byte,)) + data[pos + 1 :]
    _decodes_or_rejects(mutated)
    _decodes_or_rejects(mutated[:cut])
