"""Headless Debian chromium driven by Playwright, and the architecture page served for it: the one home of the
browser tests' page (the ``page`` fixture in tests/conftest.py wraps ``chromium_page``) and server.

A page may ask only for local things (files, data and blob URLs, the server on 127.0.0.1): the history site must
work offline, the architecture page loads nothing from elsewhere (its Content-Security-Policy says 'self')."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT_PX = (1500, 1300)  # wide and tall enough for the architecture table and the roofline side by side
LOCAL = ("file:", "data:", "blob:", "http://127.0.0.1:")
SERVER_START_S = 60  # the page imports flask and the alias table; seconds, on a loaded two-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_chromium() -> None:
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        if os.environ.get("LVM_REQUIRE_BROWSER"):
            pytest.fail("chromium is required (LVM_REQUIRE_BROWSER is set) but /usr/bin/chromium is missing")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")


@contextmanager
def chromium_page() -> Iterator[object]:
    """A fresh page; afterwards, fails the test on a JavaScript error or a request that left the machine."""
    _require_chromium()
    # Lazy: playwright is needed by the browser tests only, not by every test session that loads the conftest.
    from playwright.sync_api import Route, sync_playwright

    errors: list[str] = []
    outside: list[str] = []

    def refuse(route: Route) -> None:
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        pg = browser.new_page(viewport={"width": VIEWPORT_PX[0], "height": VIEWPORT_PX[1]})
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.route("**/*", refuse)
        yield pg
        browser.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not outside, f"the page asked the network for {outside}"


@contextmanager
def serve_page(graphs: Path, *extra: str) -> Iterator[str]:
    """``model_viz.py`` serving ``graphs`` on a free port, with the page's ``extra`` flags; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "model_viz.py", "--port", str(port), "--graphs", str(graphs), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_until_serving(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(url + "/api/models", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                raise RuntimeError(f"model_viz.py did not start: {out[-2000:]}") from None
            time.sleep(0.2)
