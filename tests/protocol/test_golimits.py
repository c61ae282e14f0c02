"""The limits of Go narun's Binary HTTP request decoder (narun.protocol.golimits)."""

from __future__ import annotations

import pytest

from narun.errors import BadRequest, NarunError, URITooLong
from narun.protocol.bhttp import Request
from narun.protocol.golimits import MAX_AUTHORITY, MAX_PATH, check_request


def req(
    method: str = "GET", scheme: str = "http", authority: str = "example.com:8080", path: str = "/"
) -> Request:
    return Request(method, scheme, authority, path)


@pytest.mark.parametrize(
    "request_",
    [
        req(),
        req(path="/" + "a" * (MAX_PATH - 1)),
        req(path="/?q=caf\xc3\xa9"),
        req(authority="a" * MAX_AUTHORITY),
        req(authority="[::1]:8080"),
        req(authority="xn--caf-dma.example"),
        req(authority=""),
        req(scheme=""),
        req(method="M" * 64, scheme="s" * 64),
    ],
)
def test_what_a_go_consumer_accepts_passes(request_: Request) -> None:
    check_request(request_)


@pytest.mark.parametrize(
    ("request_", "error", "status"),
    [
        (req(path="/" + "a" * MAX_PATH), URITooLong, 414),
        (req(method="M" * 65), BadRequest, 400),
        (req(scheme="s" * 65), BadRequest, 400),
        (req(authority="a" * (MAX_AUTHORITY + 1)), BadRequest, 400),
        (req(authority="bad host"), BadRequest, 400),
        (req(authority="user@host"), BadRequest, 400),
        (req(authority="host/path"), BadRequest, 400),
        (req(authority="caf\xc3\xa9.example"), BadRequest, 400),
    ],
)
def test_what_a_go_consumer_refuses_is_answered_here(
    request_: Request, error: type[NarunError], status: int
) -> None:
    with pytest.raises(error) as info:
        check_request(request_)
    assert info.value.http_status == status
