"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver`` through selenium) and local servers for the
browser tests (test_browser_*.py). ``make test`` installs Chromium first (tools/install_browser.sh).

Every server here listens on 127.0.0.1 on a free port and is stopped by its context manager.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMEDRIVER = os.environ.get("SEGLIB_CHROMEDRIVER", "/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parent.parent


def require_browser() -> None:
    """Skip when Chromium, its driver or selenium is missing (run ``bash tools/install_browser.sh``); on CI
    (``CI`` set) fail instead, so that a broken install never passes as a skip."""
    missing = [] if shutil.which("chromium") else ["chromium"]
    missing += [] if Path(CHROMEDRIVER).exists() else [CHROMEDRIVER]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -r requirements.txt)")
    if missing:
        msg = f"browser test needs {', '.join(missing)}; install with: bash tools/install_browser.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Wait until ``url`` answers 200; fail with the server's log when it does not (or ``proc`` exited)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    pytest.fail(f"{url} did not answer within {timeout:.0f} s (server exit code {proc and proc.poll()}):\n{tail}")


@contextlib.contextmanager
def server(cmd: list[str], url: str, log: Path, env: dict | None = None, timeout: float = 90.0):
    """Run ``cmd`` (a server on 127.0.0.1) until ``url`` answers; yield the process; stop it at the end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_http(url, timeout, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def chrome(width: int = 1400, height: int = 1000):
    """A headless Chromium WebDriver (window ``width`` x ``height`` px), quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def pixels(png: bytes) -> np.ndarray:
    """A PNG screenshot as ``uint8 H x W x 3``."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def changed_fraction(a: bytes, b: bytes) -> float:
    """Share of pixels that differ between two PNG screenshots (1.0 when their sizes differ)."""
    x, y = pixels(a), pixels(b)
    if x.shape != y.shape:
        return 1.0
    return float(np.any(x != y, axis=-1).mean())


def wait_for(predicate, timeout: float = 30.0, what: str = "condition", poll: float = 0.02):
    """Poll ``predicate()`` until it returns a truthy value (returned); fail naming ``what`` after ``timeout`` s."""
    t0 = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def save_screenshot(png: bytes, name: str, tmp_dir: Path, max_width: int = 900) -> Path:
    """Write a screenshot as ``name`` into ``tmp_dir`` and, when ``SEGLIB_SCREENSHOTS`` names a folder (e.g.
    ``docs``, relative to the repository), a copy there too: at most ``max_width`` px wide, 256 colours."""
    path = tmp_dir / name
    path.write_bytes(png)
    target = os.environ.get("SEGLIB_SCREENSHOTS")
    if target:
        folder = (ROOT / target) if not os.path.isabs(target) else Path(target)
        folder.mkdir(parents=True, exist_ok=True)
        img = Image.open(io.BytesIO(png)).convert("RGB")
        if img.width > max_width:
            img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
        img.quantize(256, method=Image.Quantize.MEDIANCUT).save(folder / name, optimize=True)
    return path
