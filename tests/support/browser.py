"""The admin in a real headless browser: Debian's ``chromium`` driven by Playwright.

Playwright drives the system browser, so ``playwright install`` (which downloads its
own) is never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.urls import reverse

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
)


@contextmanager
def admin_page(base_url: str, username: str, password: str, *, height: int,
               width: int = 1400, next_path: str | None = None) -> Iterator:
    """A browser page logged in to the admin as ``username`` (then at ``next_path``
    when given, else where the admin lands); the browser closes on leaving."""
    from playwright.sync_api import sync_playwright

    login = reverse("admin:login") + (f"?next={next_path}" if next_path else "")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(15_000)
            page.goto(f"{base_url}{login}")
            page.fill("#id_username", username)
            page.fill("#id_password", password)
            page.click("input[type=submit]")
            yield page
        finally:
            browser.close()
