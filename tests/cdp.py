"""A small Chrome DevTools Protocol client over pipes, for browser tests without new dependencies.

Chromium started with ``--remote-debugging-pipe`` reads commands on its fd 3
and writes replies and events on its fd 4: JSON messages, each ended by a NUL
byte. One reader thread sorts what arrives into replies (by ``id``) and events
(kept in order, per session). Every wait has a timeout, and ``close()`` — also
run by the context manager — kills Chromium and its process group whatever
happened.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "Browser", "CDPError", "Page", "find_chromium"]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--disable-dev-shm-usage",
]


class CDPError(RuntimeError):
    """A protocol error reply, a timeout, or Chromium going away."""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str, timeout: float = 30.0, window: tuple[int, int] = (1280, 900)) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="runsync-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # Move the child's ends above 9 so placing them on 3 and 4 cannot clobber one another.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire() -> None:  # in the child, before exec
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [executable, *CHROMIUM_FLAGS, f"--window-size={window[0]},{window[1]}",
                f"--user-data-dir={self._profile}", "--remote-debugging-pipe", "about:blank"]
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, preexec_fn=wire, pass_fds=(3, 4),  # noqa: PLW1509
                                         start_new_session=True)
        finally:
            os.close(hi_r)
            os.close(hi_w)
        self._lock = threading.Lock()
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition(self._lock)
        self._dead: str | None = None
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, name="cdp-stderr", daemon=True).start()

    # -- plumbing ---------------------------------------------------------------
    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self._stderr) < 200:
                self._stderr.append(line)

    def _read(self) -> None:
        pending = bytearray()
        try:
            while True:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    break
                start = 0
                while True:
                    end = chunk.find(b"\0", start)
                    if end < 0:
                        pending += chunk[start:]
                        break
                    pending += chunk[start:end]
                    start = end + 1
                    msg = json.loads(bytes(pending))
                    pending.clear()
                    with self._cond:
                        if "id" in msg:
                            self._replies[msg["id"]] = msg
                        else:
                            self._events.append(msg)
                        self._cond.notify_all()
        except (OSError, ValueError):
            pass
        with self._cond:
            self._dead = "Chromium closed the DevTools pipe"
            self._cond.notify_all()

    def stderr_tail(self) -> str:
        return b"".join(self._stderr[-20:]).decode("utf-8", "replace")

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply's ``result`` (raises CDPError on an error reply)."""
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            os.write(self._to_child, data)
        except OSError as e:
            raise CDPError(f"{method}: cannot write to Chromium ({e}); stderr:\n{self.stderr_tail()}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._dead or left <= 0:
                    why = self._dead or f"no reply within {timeout or self.timeout:.0f} s"
                    raise CDPError(f"{method}: {why}; stderr:\n{self.stderr_tail()}")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def events(self, method: str | None = None, session: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self._events if (method is None or e.get("method") == method)
                    and (session is None or e.get("sessionId") == session)]

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None,
                   after: int = 0) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) among events number ``after`` onwards."""
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while True:
                for e in self._events[after:]:
                    if e.get("method") == method and (session is None or e.get("sessionId") == session):
                        return e
                left = deadline - time.monotonic()
                if self._dead or left <= 0:
                    raise CDPError(f"no {method} event within {timeout or self.timeout:.0f} s")
                self._cond.wait(left)

    def event_count(self) -> int:
        with self._cond:
            return len(self._events)

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close", timeout=3)
                except CDPError:
                    pass
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
            for fd in (self._to_child, self._from_child):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: navigation, script evaluation, screenshots, and the requests it made."""

    def __init__(self, browser: Browser, target: str, session: str) -> None:
        self.browser = browser
        self.target = target
        self.session = session
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout)

    def navigate(self, url: str, timeout: float | None = None) -> None:
        mark = self.browser.event_count()
        self.send("Page.navigate", {"url": url})
        self.browser.wait_event("Page.loadEventFired", self.session, timeout, after=mark)

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The value of a JS expression (promises awaited); raises CDPError on a JS exception."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, timeout)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"JS exception in {expression[:80]!r}: {text}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.05) -> Any:
        """Poll until ``expression`` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.evaluate(expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise CDPError(f"timed out after {timeout:.0f} s waiting for {expression!r}")
            time.sleep(interval)

    def requests(self) -> list[str]:
        """URLs of every request the page started (Network.requestWillBeSent)."""
        return [e["params"]["request"]["url"] for e in self.browser.events("Network.requestWillBeSent", self.session)]

    def console_errors(self) -> list[str]:
        out = []
        for e in self.browser.events("Runtime.exceptionThrown", self.session):
            d = e["params"]["exceptionDetails"]
            out.append(d.get("exception", {}).get("description") or d.get("text", ""))
        for e in self.browser.events("Runtime.consoleAPICalled", self.session):
            if e["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"]))
        return out

    def screenshot(self, path: Path, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000),
                              "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
