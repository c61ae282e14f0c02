"""Output lines: split at a bound, never dropped."""

from __future__ import annotations

import asyncio

import pytest

from narun.node.logship import LineSplitter, pump


def test_lines_come_out_whole_across_chunks() -> None:
    s = LineSplitter(100)
    assert s.feed(b"hel") == []
    assert s.feed(b"lo\nwor") == [b"hello"]
    assert s.feed(b"ld\r\n\n") == [b"world", b""]
    assert s.flush() == []


def test_a_long_line_is_split_and_the_stream_goes_on() -> None:
    s = LineSplitter(4)
    out = s.feed(b"abcdefghij\nnext\n")
    assert out == [b"abcd", b"efgh", b"ij", b"next"]


def test_flush_gives_the_unfinished_last_line() -> None:
    s = LineSplitter(10)
    assert s.feed(b"partial") == []
    assert s.flush() == [b"partial"]
    assert s.flush() == []


def test_bad_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LineSplitter(0)


async def test_pump_reads_a_pipe_to_its_end() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"one\n" + b"x" * 10 + b"\n\xff\xfe\ntail")
    reader.feed_eof()
    lines: list[str] = []
    await pump(reader, lines.append, max_bytes=4)
    assert lines == ["one", "xxxx", "xxxx", "xx", "\ufffd\ufffd", "tail"]
