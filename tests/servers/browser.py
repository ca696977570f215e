"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright; never a
downloaded browser. Screenshots go to test-artifacts/ (ignored by git)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MIGRATOR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    # Playwright's sync API runs its own event loop; Django refuses ORM calls from a
    # thread with a running loop unless told that this test process is fine with it
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request) -> Iterator[object]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900},
                                  timezone_id="Europe/Berlin")  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        screenshot(page, f"{request.node.name}-last")  # what the page showed at the end
        context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
