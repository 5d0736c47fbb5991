"""Headless Chromium (the Debian package) driven by Playwright, for the OHIF viewer MONAI Label serves.

Playwright's own browser download is never used: the system ``chromium`` is launched with a fresh
profile and no background networking. The browser is closed (and its process tree with it) on exit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def missing_pieces() -> list[str]:
    """What of the browser stack is not installed (empty when it can run)."""
    missing = [] if chromium_path() else ["Chromium (Debian package chromium)"]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright (pip install -e .[e2e])")
    return missing


@contextmanager
def chromium_page(console: list[str], width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A new page in headless Chromium with a fresh profile; console lines and page errors go to ``console``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:500]))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"[:1000]))
            yield page
        finally:
            browser.close()


def coloured_pixels(png: Path, box: tuple[int, int, int, int]) -> int:
    """Pixels inside ``box`` (x0, y0, x1, y1) whose colour is clearly not gray (the image itself is gray)."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=int)[box[1] : box[3], box[0] : box[2]]
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def viewport_box(page: Any, selector: str = "canvas") -> tuple[int, int, int, int]:
    """The screen box (x0, y0, x1, y1) of the first element matching ``selector`` (the viewport canvas)."""
    element = page.locator(selector).first.bounding_box()
    assert element is not None, f"no {selector} on the page"
    x, y, w, h = (int(element[k]) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h
