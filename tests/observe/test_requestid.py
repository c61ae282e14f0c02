"""Request IDs: the format of new ones, which client IDs are accepted."""

from __future__ import annotations

import re

import pytest

from narun.observe import requestid


def test_new_ids_are_16_hex_digits_and_differ() -> None:
    ids = {requestid.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{16}", rid) for rid in ids)


@pytest.mark.parametrize("value", ["a", "req-1.2_3", "a b", "~!@#$%^&*()", "x" * 200])
def test_well_formed_ids_are_kept(value: str) -> None:
    assert requestid.is_valid(value)
    assert requestid.accept(value) == value
    assert requestid.from_headers([(b"x-request-id", value.encode())]) == value


@pytest.mark.parametrize("value", ["", "x" * 201, " a", "a ", "a\tb", "caf\u00e9", "a\x7f"])
def test_malformed_ids_are_replaced(value: str) -> None:
    assert not requestid.is_valid(value)
    assert requestid.accept(value) != value
    replaced = requestid.from_headers([(b"x-request-id", value.encode("utf-8"))])
    assert re.fullmatch(r"[0-9a-f]{16}", replaced)


def test_from_headers_reads_the_first_field_only() -> None:
    headers = [(b"host", b"h"), (b"x-request-id", b"first"), (b"x-request-id", b"second")]
    assert requestid.from_headers(headers) == "first"
    assert re.fullmatch(r"[0-9a-f]{16}", requestid.from_headers([(b"host", b"h")]))
    assert re.fullmatch(r"[0-9a-f]{16}", requestid.accept(None))
