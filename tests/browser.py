"""A page opened in headless Chromium through the DevTools protocol on a pipe (no driver, no package).

``open_page(path)`` loads a file and returns what the tests check: each image's decoded size, the console's
errors, whether a selector matches, and a screenshot. Chromium reads the protocol's JSON messages on fd 3
and writes on fd 4, each ended by a NUL byte (``--remote-debugging-pipe``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Without the background-networking flags Chromium keeps calling out, refused, on a closed network.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe")  # fmt: skip


def browser() -> str | None:
    """The Chromium on PATH, or None."""
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@dataclass
class Opened:
    images: list[tuple[bool, int, int]]
    """Each <img>: loaded, natural width and height (0 x 0 when it did not decode)."""
    errors: list[str]
    """Console errors, uncaught exceptions and failed loads."""
    matches: dict[str, int]
    """Selector -> how many elements match."""
    screenshot: bytes
    """PNG of the first screen."""


class _Pipe:
    def __init__(self, exe: str, profile: str) -> None:
        to_child, self._w = os.pipe()  # we write, Chromium reads (its fd 3)
        self._r, from_child = os.pipe()  # Chromium writes (its fd 4), we read

        def fds() -> None:  # onto 3 and 4 by way of fresh copies (a pipe end may itself be 3 or 4), inheritable;
            read, write = os.dup(to_child), os.dup(from_child)  # every other pipe end closes on exec
            os.dup2(read, 3)
            os.dup2(write, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900",
                                      "about:blank"], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(to_child)
        os.close(from_child)
        self._buf, self._id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._next()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(self._next())
        raise TimeoutError(method)

    def _next(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its pipe")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._w)
        os.close(self._r)


def open_page(path: Path, selectors: tuple[str, ...] = ()) -> Opened:
    """Load ``path`` from disk in headless Chromium and read back what the page shows."""
    exe = browser()
    if exe is None:
        raise FileNotFoundError("no Chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        pipe = _Pipe(exe, profile)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_for("Page.loadEventFired")
            found = pipe.send("Runtime.evaluate", {"returnByValue": True, "expression": "JSON.stringify({"
                              "images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
                              "i.naturalHeight]), matches: Object.fromEntries(" + json.dumps(list(selectors)) +
                              ".map(s => [s, document.querySelectorAll(s).length]))})"}, session=session)  # fmt: skip
            value = json.loads(found["result"]["value"])
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        finally:
            pipe.close()
    errors = []
    for event in pipe.events:
        params, method = event.get("params", {}), event.get("method")
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(str(params.get("args")))
        elif method == "Runtime.exceptionThrown":
            errors.append(str(params.get("exceptionDetails")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", ""))
    images = [tuple(i) for i in value["images"]]
    return Opened(images, errors, value["matches"], base64.b64decode(shot))
