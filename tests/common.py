"""Helpers shared by tests (imported as `tests.common`, never from conftest or other tests)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0,
             what: str = "condition") -> None:
    """Poll predicate until it holds; fail the test naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --- headless Chromium (Debian's, driven by Playwright) and a live server for it ------------

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "portal"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148")
# pytestmark of every browser module: marked, and skipped where Debian's chromium is missing.
BROWSER_MARKS = [pytest.mark.browser, pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
    reason="Debian's chromium is not installed")]


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium, headless (`playwright install` cannot download a browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """A WSGI app over real HTTP on a free loopback port (Werkzeug in a thread); its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def save_screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot to tests/artifacts/portal/<name>.png (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
