"""Headless Debian Chromium for the web app's tests and screenshots: the app served by
uvicorn on 127.0.0.1 in a thread, and a Selenium driver with the network closed (every
host resolves to nothing, so a CDN request would fail the page)."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def available() -> bool:
    return chromium() is not None and shutil.which("chromedriver") is not None


@contextmanager
def serve(studies_root: Path) -> Iterator[str]:
    """The app on a free 127.0.0.1 port until the block ends; yields its base URL."""
    import uvicorn

    from kvopt.ops.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(studies_root=studies_root),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("kvopt ui did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def driver(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = chromium() or ""
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", f"--window-size={width},{height}",
              # offline: only the loopback app resolves
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        yield d
    finally:
        d.quit()


def wait(d: Any, predicate: Any, timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout, poll_frequency=0.1).until(predicate)


def fill(d: Any, form: str, values: dict[str, str]) -> None:
    """Type ``values`` into the named fields of ``form`` (selects by value)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for name, value in values.items():
        el = d.find_element(By.CSS_SELECTOR, f"{form} [name='{name}']")
        if el.tag_name == "select":
            Select(el).select_by_value(value)
        elif el.get_attribute("type") == "checkbox":
            if el.is_selected() != (value == "on"):
                el.click()
        else:
            el.clear()
            el.send_keys(value)


def text(d: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(d.find_element(By.CSS_SELECTOR, css).get_attribute("textContent") or "")


def severe_console_errors(d: Any) -> list[dict[str, Any]]:
    """The page's errors, less the 400 answers to the bad input a test sent on purpose."""
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE" and not (
        "/api/" in e["message"] and "status of 400" in e["message"])]
