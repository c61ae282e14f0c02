"""A real headless Chromium driven over the DevTools protocol (a websocket), for page tests.

Needs Debian's ``chromium`` (``apt-get install -y chromium``); :func:`chromium_path` says
where it is or raises with that line, so a test that needs it fails rather than skips.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from narun.supervise import Child

__all__ = ["Browser", "chromium_path"]


def chromium_path() -> str:
    """The Chromium binary; AssertionError with the install line if there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("the admin page test needs Chromium: apt-get install -y chromium")


class Browser:
    """One headless Chromium with one page. ``async with Browser(tmp) as b: ...``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._child: Child | None = None
        self._log: IO[bytes] | None = None
        self.console: list[str] = []
        """Console messages and page errors, for failure reports."""

    async def __aenter__(self) -> Browser:
        profile = self.tmp / "chromium-profile"
        self._log = (self.tmp / "chromium.log").open("wb")
        popen = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec, nothing to wait for
            [
                chromium_path(),
                "--headless=new",
                "--no-sandbox",  # the tests run as root
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        self._child = Child(popen, name="chromium", own_group=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or popen.poll() is not None:
                raise AssertionError(f"chromium did not start: {self.tmp / 'chromium.log'}")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as client:
            target = (await client.put(f"http://127.0.0.1:{port}/json/new?about:blank")).json()
        self._ws = await connect(target["webSocketDebuggerUrl"], max_size=None)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._child is not None:
            await self._child.stop_async(grace=5)
        if self._log is not None:
            self._log.close()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events meanwhile are kept as console lines)."""
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if message.get("id") == ident:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"]["args"]
                self.console.append(" ".join(str(a.get("value", "")) for a in args))
            elif message.get("method") == "Runtime.exceptionThrown":
                self.console.append(str(message["params"]["exceptionDetails"]))

    async def goto(self, url: str) -> None:
        """Open ``url`` and wait until the document is loaded."""
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", what=f"{url} loaded")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def text(self, selector: str) -> str:
        """What a person sees in the element (``innerText``), '' if it is not there."""
        value = await self.evaluate(
            f"(document.querySelector({json.dumps(selector)}) || {{innerText: ''}}).innerText"
        )
        return str(value)

    async def click(self, selector: str) -> None:
        """Click the element (it must exist)."""
        found = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return false; e.click(); return true; })()"
        )
        assert found, f"nothing to click at {selector}"

    async def wait_for(self, expression: str, *, what: str, timeout: float = 30) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                body = await self.text("body")
                raise AssertionError(
                    f"not within {timeout}s: {what}\npage:\n{body}\n{self.console}"
                )
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the page as shown, written to ``path``."""
        result = await self.call("Page.captureScreenshot", format="png")
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(path.write_bytes, data)
        return data
