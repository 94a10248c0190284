"""A real headless Chromium for the web view's tests, driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on file descriptors 3 and 4), so no
websocket client or browser-automation package is needed. Debian's ``chromium``; tests skip where
there is none, and fail on CI, where ``.ci/run`` installs it."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from _services import service_missing

BINARIES = ("chromium", "chromium-browser", "google-chrome")


def require_chromium() -> str:
    """The browser's path; skips the test where none is installed (fails it on CI)."""
    found = next((path for path in map(shutil.which, BINARIES) if path), None)
    if found is None:
        service_missing("no chromium: apt-get install chromium (.ci/run does)")
    return found


class Browser:
    """``open(url)`` -> a page session; ``evaluate``, ``wait_for``, ``screenshot`` on it; ``close()``."""

    def __init__(self, binary: str, profile: Path, size: tuple[int, int] = (1280, 900)) -> None:
        self.size = size
        to_browser, self._out = _pipe_pair()  # the browser reads fd 3
        self._in, from_browser = _pipe_pair()  # and writes fd 4
        flags = ["--headless", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run", "--hide-scrollbars",
                 f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen([binary, *flags, "about:blank"], pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     preexec_fn=lambda: (os.dup2(to_browser, 3), os.dup2(from_browser, 4)))
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        """Send one command, return its result (events in between are skipped); AssertionError on an error."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("the browser did not answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise AssertionError("the browser closed its pipe")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(line)

    def open(self, url: str, timeout: float = 30) -> str:
        """A new page with ``url`` loaded (its scripts run); its session id."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        width, height = self.size  # the viewport exactly (a window's size includes what headless takes off it)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        self.wait_for(session, f"location.href === {json.dumps(url)} && document.readyState === 'complete'",
                      timeout, what=f"{url} to load")
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 30, what: str = "") -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.2)
        body = self.evaluate(session, "document.body ? document.body.innerText.slice(0, 2000) : ''")
        raise AssertionError(f"timed out waiting for {what or expression}; the page says:\n{body}")

    def screenshot(self, session: str) -> bytes:
        """The page as PNG bytes."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"}, session)["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pipe_pair() -> tuple[int, int]:
    """``os.pipe()`` with both ends numbered above 4, so the child's dup2 onto 3 and 4 cannot clobber one."""
    read, write = os.pipe()
    moved = fcntl.fcntl(read, fcntl.F_DUPFD, 10), fcntl.fcntl(write, fcntl.F_DUPFD, 10)
    os.close(read)
    os.close(write)
    return moved
