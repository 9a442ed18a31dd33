"""Open a local HTML file in headless Chromium and report console errors, exceptions and images.

A test helper, standard library only: it drives the browser over the Chrome DevTools Protocol on
``--remote-debugging-pipe``, where the browser reads null-byte-terminated JSON messages on its fd 3 and writes
them on its fd 4. ``scripts/install_chromium.sh`` installs Debian's ``chromium``; tests that need it skip when
:func:`find_chromium` returns None.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PageReport", "check_page", "find_chromium"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
_SETTLE_SECONDS = 0.5  # after the load event, wait until the page has been quiet this long ...
_SETTLE_MAX_SECONDS = 5.0  # ... but no longer than this (a page with a ticking timer is never quiet)
_IMAGES_JS = """({
  title: document.title,
  images: Array.from(document.querySelectorAll("img"), (im) => ({
    src_start: String(im.getAttribute("src") || "").slice(0, 40),
    complete: im.complete,
    width: im.naturalWidth,
    height: im.naturalHeight,
  })),
})"""


def find_chromium() -> str | None:
    """Locate a Chromium-family browser.

    Returns:
        The path in ``SOFTLABELS_CHROMIUM`` if that is set and names an executable (a bare name is looked up on
        PATH), else the first of ``chromium``, ``chromium-browser``, ``google-chrome`` on PATH, else None.
    """
    override = os.environ.get("SOFTLABELS_CHROMIUM")
    if override:
        return shutil.which(override)
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class PageReport:
    """What a page did while it loaded in the browser.

    Attributes:
        console_errors: Texts of ``console.error`` / ``console.assert`` calls and of browser log entries of level
            "error" (failed resource loads, blocked requests, ...).
        exceptions: Texts of uncaught exceptions (``Runtime.exceptionThrown``).
        images: One dict per ``<img>`` in document order: ``src_start`` (first 40 characters of its ``src``
            attribute), ``complete``, ``width`` and ``height`` (its natural size; 0 when it failed to decode).
        title: ``document.title``.
    """

    console_errors: list[str]
    exceptions: list[str]
    images: list[dict[str, Any]]
    title: str

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        """The images that did not finish loading or decoded to nothing (natural width 0)."""
        return [im for im in self.images if not im["complete"] or not im["width"]]


class _Pipe:
    """A DevTools Protocol connection over the two pipes of ``--remote-debugging-pipe``."""

    def __init__(self, write_fd: int, read_fd: int, proc: subprocess.Popen[bytes]) -> None:
        self._write_fd = write_fd
        self._read_fd = read_fd
        self.proc = proc
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None, session: str | None, deadline: float) -> dict[str, Any]:
        """Send a command and wait for its answer, keeping the events that arrive meanwhile.

        Args:
            method: Protocol method, e.g. ``"Page.navigate"``.
            params: Its parameters.
            session: Session id of the attached target, or None for the browser itself.
            deadline: ``time.monotonic()`` by which the answer must have come.

        Returns:
            The command's ``result``.

        Raises:
            TimeoutError: When no answer came by the deadline.
            RuntimeError: When the browser answered with an error or went away.
        """
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._write_fd, data) :]
        except BrokenPipeError as err:
            raise RuntimeError(f"headless Chromium closed the DevTools pipe before {method} (it exited)") from err
        while True:
            reply = self.receive(deadline)
            if reply is None:
                raise TimeoutError(f"headless Chromium did not answer {method} in time")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"headless Chromium refused {method}: {reply['error']}")
                return reply.get("result", {})

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """Read the next message, recording it in :attr:`events` when it is an event.

        Args:
            deadline: ``time.monotonic()`` after which to give up.

        Returns:
            The message, or None when none was complete by the deadline.

        Raises:
            RuntimeError: When the browser closed its end of the pipe (it exited or crashed).
        """
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(self._read_fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"headless Chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def wait_event(self, method: str, session: str, deadline: float, step: str) -> None:
        """Read until an event named ``method`` arrives from ``session`` (or has already arrived).

        Raises:
            TimeoutError: Naming ``step`` when the event did not come by the deadline.
        """
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return
            seen = len(self.events)
            if self.receive(deadline) is None:
                raise TimeoutError(f"headless Chromium: timed out waiting for {step} ({method})")

    def close(self) -> None:
        """Close both pipe ends on this side."""
        os.close(self._write_fd)
        os.close(self._read_fd)

    def settle(self, quiet: float, deadline: float) -> None:
        """Read messages until none has come for ``quiet`` seconds, or until the deadline."""
        while time.monotonic() < deadline:
            if self.receive(min(deadline, time.monotonic() + quiet)) is None:
                return


def _high_fd(fd: int) -> int:
    """Move ``fd`` to a number of at least 10 (close-on-exec), so it cannot collide with fds 3 and 4."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _launch(browser: str, workdir: Path) -> _Pipe:
    """Start the browser with its DevTools pipe on fds 3 (it reads) and 4 (it writes).

    A one-line ``bash`` trampoline (POSIX ``sh`` only handles fds 0-9) puts the two pipe ends on fds 3 and 4, closes
    their original numbers (>= 10, so they cannot clash with 3 and 4) and execs the browser, so no ``preexec_fn``
    is needed. The browser leads a new process group (its
    renderer and utility processes join it), so :func:`_close_browser` can kill all of it at once.
    """
    r, to_browser = (_high_fd(fd) for fd in os.pipe())
    from_browser, w = (_high_fd(fd) for fd in os.pipe())
    trampoline = f'exec "$@" 3<&{r} 4>&{w} {r}<&- {w}>&-'
    bash = shutil.which("bash") or "/bin/bash"
    argv = [bash, "-c", trampoline, "bash", browser, *_FLAGS, f"--user-data-dir={workdir / 'profile'}"]
    try:
        with open(workdir / "chromium.log", "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(r, w), start_new_session=True
            )
    except BaseException:
        os.close(to_browser)
        os.close(from_browser)
        raise
    finally:
        os.close(r)
        os.close(w)
    return _Pipe(to_browser, from_browser, proc)


def _remote_text(obj: dict[str, Any]) -> str:
    """Render a ``Runtime.RemoteObject`` (a console argument) as text."""
    if obj.get("type") == "string":
        return str(obj.get("value", ""))
    if "value" in obj:
        return json.dumps(obj["value"])
    return str(obj.get("description", obj.get("type", "")))


def _collect(events: list[dict[str, Any]], session: str) -> tuple[list[str], list[str]]:
    """Pick the console errors and the uncaught exceptions of ``session`` out of the recorded events."""
    errors: list[str] = []
    exceptions: list[str] = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(_remote_text(arg) for arg in params.get("args", []))
            errors.append(text or f"console.{params['type']}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"{entry.get('text', '')} ({entry['url']})" if entry.get("url") else entry.get("text", ""))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description")
            exceptions.append(f"{details.get('text', 'Uncaught')} {description}" if description else details["text"])
    return errors, exceptions


def _inspect(pipe: _Pipe, url: str, deadline: float) -> PageReport:
    """Open ``url`` in a new tab, let it load and settle, and read back what happened."""
    target = pipe.call("Target.createTarget", {"url": "about:blank"}, None, deadline)["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True}, None, deadline)["sessionId"]
    for domain in ("Runtime", "Log", "Page"):
        pipe.call(f"{domain}.enable", None, session, deadline)
    pipe.events.clear()
    navigation = pipe.call("Page.navigate", {"url": url}, session, deadline)
    if navigation.get("errorText"):
        raise RuntimeError(f"headless Chromium could not open {url}: {navigation['errorText']}")
    pipe.wait_event("Page.loadEventFired", session, deadline, "the page's load event")
    pipe.settle(_SETTLE_SECONDS, min(deadline, time.monotonic() + _SETTLE_MAX_SECONDS))
    params = {"expression": _IMAGES_JS, "returnByValue": True}
    evaluated = pipe.call("Runtime.evaluate", params, session, deadline)
    if "exceptionDetails" in evaluated:
        raise RuntimeError(f"reading the images back failed: {evaluated['exceptionDetails']}")
    value = evaluated["result"]["value"]
    errors, exceptions = _collect(pipe.events, session)
    return PageReport(console_errors=errors, exceptions=exceptions, images=value["images"], title=value["title"])


def check_page(path: Path, *, timeout: float = 60.0) -> PageReport:
    """Load a local HTML file in a fresh headless Chromium and report what went wrong in it.

    Args:
        path: The HTML file.
        timeout: Seconds for the whole check (start, load, settle, read-back).

    Returns:
        The console errors, uncaught exceptions, images and title of the loaded page.

    Raises:
        FileNotFoundError: When ``path`` does not exist or no browser is found (see :func:`find_chromium`).
        TimeoutError: Naming the step that did not finish in time.
        RuntimeError: When the browser exits early or refuses a command.
    """
    path = Path(path).resolve(strict=True)
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium found (set SOFTLABELS_CHROMIUM or run scripts/install_chromium.sh)")
    deadline = time.monotonic() + timeout
    workdir = Path(tempfile.mkdtemp(prefix="softlabels-chromium-"))
    try:
        pipe = _launch(browser, workdir)
        try:
            return _inspect(pipe, path.as_uri(), deadline)
        except (RuntimeError, TimeoutError) as err:
            raise type(err)(f"{err}; browser log tail:\n{_log_tail(workdir)}") from err
        finally:
            _close_browser(pipe)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _log_tail(workdir: Path, lines: int = 20) -> str:
    """The last lines of the browser's own stdout/stderr log."""
    try:
        text = (workdir / "chromium.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _close_browser(pipe: _Pipe) -> None:
    """Ask the browser to close, give it a moment, then kill its whole process group and close the pipes."""
    proc = pipe.proc
    try:
        pipe.call("Browser.close", None, None, time.monotonic() + 5.0)
    except (OSError, RuntimeError):  # TimeoutError is an OSError; the pipe may close before the answer
        pass
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    pipe.close()
