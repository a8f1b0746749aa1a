"""Headless Chromium for the page tests, driven over the DevTools protocol.

``Browser`` starts Chromium with ``--remote-debugging-pipe``: commands and answers travel as
NUL-separated JSON over two pipes that Chromium reads and writes as file descriptors 3 and 4,
so no port is opened and no client library is needed. It does what a reviewer does: open a
file, click at a button's position with real mouse events, type, download, reload, and take
screenshots; and it collects the console (CSP violations, script errors).

Network access is made impossible as in ``CHROMIUM_FLAGS`` (no DNS, a proxy that refuses).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "run scripts/install_chromium.sh (as root; it apt-get installs `chromium`)"
# Both network flags keep Chromium from reaching anything: no DNS, and a proxy that refuses.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0",
]
COMMAND_TIMEOUT_S = 60
# Chromium's DevTools pipe: it reads commands from fd 3 and writes answers to fd 4.
_PIPE_IN, _PIPE_OUT = 3, 4


def chromium_binary() -> str:
    """Chromium's path; a missing browser fails the test with the install hint."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    if found is None:
        pytest.fail(f"headless Chromium is required for the page tests: {INSTALL_HINT}")
    return found


def _high_fds(*fds: int) -> list[int]:
    """The same pipe ends as close-on-exec fds numbered 10 or above."""
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
    for fd in fds:
        os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """A DevTools command failed or an awaited event did not come."""


class Browser:
    """One headless Chromium with one page (tab), for one test module."""

    def __init__(self, profile: Path, downloads: Path, width: int = 1280, height: int = 900):
        self.downloads = downloads
        self.console: list[str] = []
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._answers: dict[int, dict[str, Any]] = {}
        self._answered = threading.Condition()
        self._next_id = 0
        self._start(profile)
        self.session = self._open_page(width, height)

    # --- process and protocol -----------------------------------------------------------------

    def _start(self, profile: Path) -> None:
        # The child's ends go above fd 10 first, so that making them fds 3 and 4 cannot clobber
        # one with the other. Python's own fds are close-on-exec: only 3 and 4 reach Chromium.
        to_child, from_parent = _high_fds(*os.pipe())
        to_parent, from_child = _high_fds(*os.pipe())

        def pipes_as_3_and_4() -> None:  # runs in the child, before exec
            os.dup2(to_child, _PIPE_IN)
            os.dup2(from_child, _PIPE_OUT)

        self._stderr = open(profile.parent / "chromium-stderr.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [chromium_binary(), *CHROMIUM_FLAGS, "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            close_fds=False, preexec_fn=pipes_as_3_and_4,
        )
        os.close(to_child)
        os.close(from_child)
        self._writer = os.fdopen(from_parent, "wb", buffering=0)
        reader = os.fdopen(to_parent, "rb", buffering=0)
        threading.Thread(target=self._read, args=(reader,), daemon=True).start()

    def _read(self, reader) -> None:
        buffer = b""
        while chunk := reader.read(65536):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._answered:
                        self._answers[message["id"]] = message
                        self._answered.notify_all()
                else:
                    self._on_event(message)

    def _on_event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append(f"{entry.get('level')}: {entry.get('text')}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console.append(f"exception: {details.get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning"):
            self.console.append(f"console.{params['type']}: {params.get('args')}")
        self._events.put(message)

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = "page") -> dict[str, Any]:
        """Send one command (to the page's session, or to the browser with ``session=None``)
        and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session is not None:
            message["sessionId"] = self.session if session == "page" else session
        self._writer.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        with self._answered:
            while self._next_id not in self._answers:
                if not self._answered.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"{method}: no answer in {COMMAND_TIMEOUT_S}s")
            answer = self._answers.pop(self._next_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_for(self, method: str, timeout_s: float = COMMAND_TIMEOUT_S,
                 where=lambda params: True) -> dict[str, Any]:
        """The next event ``method`` (whose params satisfy ``where``); earlier ones dropped."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BrowserError(f"no {method} event in {timeout_s}s") from None
            if event.get("method") == method and where(event.get("params", {})):
                return event["params"]

    def _open_page(self, width: int, height: int) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=None)
        attached = self.send("Target.attachToTarget",
                             {"targetId": target["targetId"], "flatten": True}, session=None)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Browser.setDownloadBehavior", {"behavior": "allow", "eventsEnabled": True,
                                                  "downloadPath": str(self.downloads)},
                  session=None)
        return self.session

    def close(self) -> None:
        with contextlib.suppress(BrowserError):  # it may close before answering
            self.send("Browser.close", session=None)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()

    # --- what a reviewer does -----------------------------------------------------------------

    def open(self, path: Path) -> None:
        """Load a local file and wait until it has loaded."""
        self._drain()
        self.send("Page.navigate", {"url": path.as_uri()})
        self.wait_for("Page.loadEventFired")

    def reload(self) -> None:
        self._drain()
        self.send("Page.reload")
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        done = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                              "awaitPromise": True})
        if "exceptionDetails" in done:
            raise BrowserError(f"{expression[:80]}: {done['exceptionDetails']}")
        return done["result"].get("value")

    def click(self, selector: str) -> None:
        """A real left click (mouse pressed and released) at the centre of the element."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
        )
        if box is None:
            raise BrowserError(f"nothing matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                   "button": "left", "clickCount": 1})

    def type_into(self, selector: str, text: str) -> None:
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def download(self, selector: str, timeout_s: float = 30) -> Path:
        """Click what starts a download and return the downloaded file."""
        self._drain()
        self.click(selector)
        begun = self.wait_for("Browser.downloadWillBegin", timeout_s)
        self.wait_for("Browser.downloadProgress", timeout_s,
                      where=lambda p: p.get("guid") == begun["guid"]
                      and p.get("state") in ("completed", "canceled"))
        path = self.downloads / begun["suggestedFilename"]
        if not path.exists():
            raise BrowserError(f"download {begun['suggestedFilename']} did not complete")
        return path

    def screenshot(self, path: Path) -> Path:
        """The whole page (not just the window) as a PNG, scrolled to the top first so that
        sticky parts sit where a reader first sees them."""
        self.evaluate("window.scrollTo(0, 0)")
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                     "scale": 1},
        })
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def _drain(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()
