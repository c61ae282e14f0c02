"""The WSGI adapter: PEP 3333 environ strings for raw bytes in the request target."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from narun.consumer.http.asgi import ASGIBridge
from narun.consumer.http.wsgi import wsgi_to_asgi
from narun.protocol.bhttp import Request

Seen = dict[str, str]


def recording_app(seen: Seen) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        seen["PATH_INFO"] = environ["PATH_INFO"]
        seen["QUERY_STRING"] = environ["QUERY_STRING"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


@pytest.mark.parametrize(
    ("target", "path_info", "query"),
    [
        ("/plain?a=1", "/plain", "a=1"),
        ("/caf%C3%A9?q=%C3%A9", "/caf\xc3\xa9", "q=%C3%A9"),  # escaped: as any server
        ("/caf\xc3\xa9?q=caf\xc3\xa9", "/caf\xc3\xa9", "q=caf\xc3\xa9"),  # raw UTF-8
        ("/bad\xff?q=\xfe", "/bad\xff", "q=\xfe"),  # raw bytes that are not UTF-8
        ("/bad%FF", "/bad\xff", ""),
    ],
)
async def test_environ_holds_the_target_bytes_as_latin1(
    target: str, path_info: str, query: str
) -> None:
    seen: Seen = {}
    bridge = ASGIBridge(wsgi_to_asgi(recording_app(seen), workers=1))
    response = await bridge(Request("GET", "", "localhost", target), client=None)
    assert response.status == 200
    assert seen == {"PATH_INFO": path_info, "QUERY_STRING": query}
