"""What a user does in the console, as steps a test reads: sign in, fill a form, click, wait to see."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("INFERSTACK_CONSOLE_SCREENSHOTS")
"""A directory (docs/, say) to save the main pages' screenshots in; unset: none are saved."""


def headless_chromium(downloads: Path | None = None) -> webdriver.Chrome:
    """Debian's chromium through its chromium-driver (the tests' browser, and bench/console.py's)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-gpu", "--no-first-run"):
        options.add_argument(argument)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    # An explicit driver path: Selenium Manager would otherwise try to download a driver.
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Console:
    def __init__(self, driver: WebDriver, url: str) -> None:
        self.driver = driver
        self.url = url.rstrip("/") + "/console/"

    def wait(self, condition: Callable[[], T], timeout: float = 60, what: str = "") -> T:
        def attempt(_: WebDriver) -> T | bool:
            try:
                return condition()
            except (StaleElementReferenceException, WebDriverException):  # the page re-rendered meanwhile
                return False
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(attempt, what)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.all(css)
        return found[0].text if found else ""

    def open(self, fragment: str = "#/") -> None:
        self.driver.get(self.url + fragment)

    def sign_in(self, key: str) -> None:
        self.open()
        field = self.wait(lambda: self.find("#api-key"), what="the sign-in form")
        field.send_keys(key)
        self.find("#signin-form button[type=submit]").click()
        self.wait(lambda: self.driver.execute_script("return document.body.dataset.rendered") == "deployments",
                  what="the deployments list")

    def sign_out(self) -> None:
        self.find("#sign-out").click()
        self.wait(lambda: self.find("#api-key"), what="the sign-in form")

    def fill(self, form: str, values: dict[str, Any]) -> None:
        for name, value in values.items():
            field = self.find(f"{form} [name={name}]")
            if field.tag_name == "select":
                Select(field).select_by_visible_text(str(value))
            else:
                field.clear()
                field.send_keys(str(value))

    def submit(self, form: str) -> None:
        self.find(f"{form} button[type=submit]").click()

    def field_error(self, form: str, name: str) -> str:
        return self.text(f'{form} .field-error[data-for="{name}"]')

    def session_key(self) -> str | None:
        return self.driver.execute_script("return sessionStorage.getItem('inferstack.apiKey')")

    def screenshot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            size = self.driver.get_window_size()
            self.driver.set_window_size(1400, 1500)  # the whole page from the top, as a reader first sees it
            self.driver.execute_script("window.scrollTo(0, 0)")
            self.driver.save_screenshot(str(Path(SCREENSHOTS) / name))
            self.driver.set_window_size(size["width"], size["height"])
