"""A real headless Chromium (Debian's, never Playwright's download) driving the console.

Every request the browser makes to anything but 127.0.0.1 is refused and recorded, so a
journey also proves the console works with the network cut. Each journey saves a screenshot
of its last page under ``$EXOPLANE_TEST_ARTIFACTS`` (default: the test's tmp directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Route, async_playwright

from tests.waiting import WAIT_SECONDS

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = ("127.0.0.1",)


def chromium_executable() -> str:
    """Debian's Chromium; a missing one fails the test (``.ci/run`` installs it)."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        pytest.fail("chromium is not installed: apt-get install chromium (as .ci/run does)")
    return found


def artifacts_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("EXOPLANE_TEST_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class Browser:
    context: BrowserContext
    page: Page
    base_url: str
    artifacts: Path
    refused: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    async def goto(self, path: str) -> None:
        await self.page.goto(self.base_url + path)

    async def sign_in(self, email: str, password: str) -> None:
        await self.goto("/console/login")
        await self.page.get_by_label("Email").fill(email)
        await self.page.get_by_label("Password").fill(password)
        await self.page.get_by_role("button", name="Sign in").click()

    async def nav(self, name: str) -> None:
        """Follow the navigation bar's link ``name``."""
        bar = self.page.get_by_role("navigation", name="Console")
        await bar.get_by_role("link", name=name, exact=True).click()

    async def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def source(self, path: str) -> str:
        """The HTML the server sent for ``path`` (with this browser's cookies)."""
        response = await self.context.request.get(self.base_url + path)
        return await response.text()


@contextlib.asynccontextmanager
async def chromium(base_url: str, tmp_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable(),
            headless=True,
            args=CHROMIUM_ARGS,
            permissions=["clipboard-read", "clipboard-write"],
        )
        context.set_default_timeout(WAIT_SECONDS * 1000)
        page = context.pages[0] if context.pages else await context.new_page()
        browser = Browser(context, page, base_url, artifacts_dir(tmp_path))

        async def loopback_only(route: Route) -> None:
            if urlsplit(route.request.url).hostname in LOOPBACK:
                await route.continue_()
            else:
                browser.refused.append(route.request.url)
                await route.abort()

        await context.route("**/*", loopback_only)
        page.on("dialog", lambda dialog: browser.dialogs.append(dialog.message))
        try:
            yield browser
        finally:
            await context.close()
        assert browser.refused == [], f"the console reached beyond loopback: {browser.refused}"
