"""Headless Chromium from Debian's packages (chromium, chromium-driver), driven by Selenium.

Tests marked `browser` skip, saying why, on a machine without them; under CI=true that skip is a
failure (tests/conftest.py), and `.ci/test` installs both packages when they are missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_driver import CHROMEDRIVER, CHROMIUM, headless_chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = headless_chromium(downloads)
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()
