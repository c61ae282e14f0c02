"""Logging set-up of the programs: request IDs in every record, the access log switch."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from narun.observe import requestid
from narun.observe.log import ACCESS_LOGGER, configure


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger(ACCESS_LOGGER)
    access_level = access.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.setLevel(access_level)


def log_in_request(rid: str | None, logger: str = "narun.test", **extra: object) -> None:
    token = requestid.current.set(rid)
    try:
        logging.getLogger(logger).info("hello %s", "world", extra=extra)
    finally:
        requestid.current.reset(token)


def test_text_lines_end_with_the_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="info", fmt="text", name="gw")
    log_in_request("abc-1")
    log_in_request(None)
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(" gw INFO narun.test: hello world [req=abc-1]")
    assert second.endswith(" gw INFO narun.test: hello world")


def test_json_lines_carry_the_request_id_and_access_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure(level="info", fmt="json")
    log_in_request("abc-2", ACCESS_LOGGER, narun={"status": 200, "route": "/x"})
    log_in_request(None)
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["request_id"] == "abc-2"
    assert (first["logger"], first["status"], first["route"]) == (ACCESS_LOGGER, 200, "/x")
    assert first["message"] == "hello world"
    assert "request_id" not in second


@pytest.mark.parametrize("enabled", [True, False])
def test_access_log_switch(enabled: bool, capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="info", access_log=enabled)
    assert logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO) is enabled
    log_in_request("r", ACCESS_LOGGER)
    log_in_request("r")  # other loggers are not affected
    assert len(capsys.readouterr().err.splitlines()) == (2 if enabled else 1)


def test_access_log_follows_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="warning")
    assert not logging.getLogger(ACCESS_LOGGER).isEnabledFor(logging.INFO)
