"""A real `ragtune ui` server and headless Chromium driving it (tests/test_ui_browser.py, bench/ui.py).

Debian's `chromium` and `chromium-driver` packages; `.ci/run` installs them where they are missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_missing() -> str | None:
    """Why the browser cannot run here, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the test extra)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ui(*options: str) -> tuple[subprocess.Popen, str]:
    """`ragtune ui` on a free localhost port, started as a user would, in its own process group."""
    port = free_port()
    command = [sys.executable, "-m", "ragtune.cli.main", "ui", "--port", str(port), *options]
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    return server, f"http://127.0.0.1:{port}"


def wait_healthy(server: subprocess.Popen, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"ragtune ui exited with {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ragtune ui did not answer on {url} within {timeout:.0f} s") from None
            time.sleep(0.2)


def stop_group(server: subprocess.Popen) -> None:
    """Stop the server's whole process group: streamlit and anything it started."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@contextmanager
def ui_server(*options: str, timeout: float = 120):
    """`ragtune ui` on a free localhost port; yields its URL once it answers, then stops it."""
    server, url = start_ui(*options)
    try:
        wait_healthy(server, url, timeout)
        yield url
    finally:
        stop_group(server)


def chromium(width: int = 1400, height: int = 1000):
    """Headless Chromium under chromedriver, with no background network traffic (this machine has none)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(condition, timeout: float = 60, poll: float = 0.05):
    """The first truthy value of `condition()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 (elements come and go while Streamlit re-renders)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {getattr(condition, '__name__', 'the page')}")
        time.sleep(poll)


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def screenshot(driver, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
