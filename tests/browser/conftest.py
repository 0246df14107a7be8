"""Browser tests: the real web app under uvicorn on a free loopback port (a thread of the test
process, a real database) driven by Debian's headless chromium through Playwright's sync API.

Playwright's own browser download cannot work on these machines: ``executable_path`` points
at the distribution's chromium, which scripts/bootstrap.sh installs with the test extras.
The app is served over plain HTTP on 127.0.0.1, as ``xgate serve`` does by default; its
session cookie is Secure, and chromium keeps it because loopback is a secure context.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from gateway.settings import Settings, load_settings
from tests.conftest import write_master_key
from tests.support.web import serving_web_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# The README's screenshots are written only when asked for (`make screenshots` sets this), so a
# test run leaves the tree as it was: the enrolment page shows a fresh random secret each time.
SCREENSHOTS_ENV = "XGATE_SCREENSHOTS"
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(autouse=True)
def _cheap_hashing(cheap_hashing: None) -> None:
    """Every browser test logs someone in: argon2 at test cost for all of them."""


@pytest.fixture
def web_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    database = tmp_path / "xgate.db"
    shutil.copyfile(sqlite_template, database)
    data_dir = tmp_path / "var"
    key = write_master_key(data_dir)
    return load_settings(None, data_dir=str(data_dir),
                         database={"url": f"sqlite:///{database}"},
                         storage={"master_key_file": str(key)})


@dataclass(frozen=True)
class WebApp:
    url: str
    settings: Settings


@pytest.fixture
def web_app(web_settings: Settings) -> Iterator[WebApp]:
    with serving_web_app(web_settings) as port:
        yield WebApp(f"http://127.0.0.1:{port}", web_settings)


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main
# thread until it stops, and every later test calling asyncio.run() would then fail with
# "cannot be called from a running event loop".
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run scripts/bootstrap.sh --extras test (apt-get install chromium)")
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                          args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", viewport={"width": 1100, "height": 760})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def screenshot(page: Page, name: str) -> None:
    """A screenshot: always taken (so the page renders in full), kept for the README
    (docs/screenshots/NAME.png) only when XGATE_SCREENSHOTS is set."""
    png = page.screenshot(full_page=True)
    assert png.startswith(b"\x89PNG")
    if os.environ.get(SCREENSHOTS_ENV):
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (README_SCREENSHOTS / f"{name}.png").write_bytes(png)
