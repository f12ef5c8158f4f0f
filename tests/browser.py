"""Headless Chromium for tests: Debian's browser driven by Playwright (no browser download)."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: `apt-get install chromium` (.ci/run does this)")
    return path


@contextmanager
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


def ink_strokes(image: np.ndarray, threshold: int = 100):
    """Horizontal strokes covering every run of ink pixels, row by row: the digit as a person might trace it."""
    for row in range(image.shape[0]):
        cols = np.nonzero(image[row] > threshold)[0]
        if len(cols) == 0:
            continue
        breaks = np.nonzero(np.diff(cols) > 1)[0]
        for start, end in zip(np.r_[cols[0], cols[breaks + 1]], np.r_[cols[breaks], cols[-1]]):
            yield row, int(start), int(end)


def draw_digit(page, image: np.ndarray, canvas: str = "#pad") -> None:
    """Trace a 28x28 uint8 digit on the page's drawing canvas with the mouse, stroke by stroke."""
    box = page.locator(canvas).bounding_box()
    scale = box["width"] / image.shape[1]
    for row, start, end in ink_strokes(image):
        y = box["y"] + (row + 0.5) * scale
        page.mouse.move(box["x"] + (start + 0.5) * scale, y)
        page.mouse.down()
        page.mouse.move(box["x"] + (end + 0.5) * scale, y)  # one straight segment, as the page draws it
        page.mouse.up()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A plain static file server, as any static host serves files (with the WebAssembly MIME type)."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript", ".js": "text/javascript"}

    def log_message(self, *args):
        pass


@contextmanager
def static_server(directory: Path):
    """Serve ``directory`` on a free loopback port; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
