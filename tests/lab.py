"""JupyterLab driven in headless Chromium as a person uses it: open a notebook, Run > Run All Cells, read what
each cell shows, and work the ipywidgets (sliders by keyboard, toggle buttons, checkboxes, dropdowns).
Used by tests/test_browser_notebooks.py; servers and browser come from tests/browser.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from pathlib import Path

import papermill
from browser import chrome, free_port, server, wait_for

# JupyterLab settings for the test profile: every cell in the DOM (no virtual scrolling), no news pop-up
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                          "checkForUpdates": False},
}
ERROR_MARKERS = ("Traceback (most recent call last)", "Error: ", "Exception: ")


@contextlib.contextmanager
def jupyterlab(root: Path, log: Path):
    """JupyterLab 4 serving ``root`` on a loopback port with a random token; yields ``(base_url, token)``."""
    settings = root / ".lab-settings"
    for rel, value in LAB_SETTINGS.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
               SEGLIB_ENV="local", HF_HUB_OFFLINE="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
           "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly"]
    base = f"http://127.0.0.1:{port}"
    with server(cmd, f"{base}/api/status?token={token}", log, env=env):
        yield base, token


def parameterized_copy(src: Path, dst: Path, parameters: dict) -> Path:
    """``src`` with papermill's injected-parameters cell after its ``parameters`` cell, written to ``dst``: what a
    user does by editing the parameters cell."""
    nb = papermill.iorw.load_notebook_node(str(src))
    nb = papermill.parameterize.parameterize_notebook(nb, parameters)
    papermill.iorw.write_ipynb(nb, str(dst))
    return dst


class Lab:
    """One JupyterLab page in Chromium. ``d`` is the selenium driver."""

    PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab in front

    def __init__(self, driver, base: str, token: str, screenshot_dir: Path):
        self.d, self.base, self.token, self.screenshot_dir = driver, base, token, screenshot_dir

    def open(self, name: str) -> None:
        """Open ``name`` (relative to the server root) and wait until its cells are shown and the kernel idles."""
        from selenium.webdriver.common.by import By

        self.d.get(f"{self.base}/lab/tree/{name}?token={self.token}")
        wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, f"{self.PANEL} .jp-CodeCell"), 90, f"{name} to open")
        wait_for(lambda: "Idle" in self.status(), 90, "the kernel to start (status bar 'Idle')")

    def shutdown_kernels(self) -> None:
        """Shut down every kernel of the server (its REST API), as Kernel > Shut Down All Kernels does."""
        import urllib.request

        with urllib.request.urlopen(f"{self.base}/api/kernels?token={self.token}", timeout=10) as r:
            kernels = json.load(r)
        for k in kernels:
            req = urllib.request.Request(f"{self.base}/api/kernels/{k['id']}?token={self.token}", method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()

    def status(self) -> str:
        from selenium.webdriver.common.by import By

        return " ".join(e.text for e in self.d.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-Widget"))

    def menu(self, bar: str, command: str) -> None:
        """Click menu ``bar`` (e.g. "Run") then the item whose JupyterLab command is ``command``."""
        from selenium.webdriver.common.by import By

        next(e for e in self.d.find_elements(By.CSS_SELECTOR, "li.lm-MenuBar-item") if e.text.strip() == bar).click()
        item = wait_for(lambda: [e for e in self.d.find_elements(By.CSS_SELECTOR, "li.lm-Menu-item")
                                 if e.get_attribute("data-command") == command], 10, f"menu item {command}")
        item[0].click()

    def run_all(self, timeout: float) -> float:
        """Run > Run All Cells; wait until every code cell has an execution count and the kernel idles.
        Returns the seconds it took."""
        t0 = time.monotonic()
        self.menu("Run", "runmenu:run-all")

        def done():
            errors = self.errors()
            if errors:  # Run All stops at a failing cell: say which, at once
                raise AssertionError("a cell shows an error:\n" + "\n---\n".join(errors))
            prompts = self.prompts()
            return prompts and all(p.strip("[]: ").isdigit() for p in prompts) and "Idle" in self.status()

        try:
            wait_for(done, timeout, "Run All Cells to finish", poll=1.0)
        except BaseException:
            self.d.save_screenshot(str(self.screenshot_dir / "run_all_failed.png"))
            raise
        return time.monotonic() - t0

    def prompts(self) -> list[str]:
        from selenium.webdriver.common.by import By

        return [e.text for e in self.d.find_elements(By.CSS_SELECTOR, f"{self.PANEL} .jp-CodeCell .jp-InputArea-prompt")]

    def code_cells(self) -> list[tuple[str, object]]:
        """``(source, output area element)`` for every code cell, in order."""
        from selenium.webdriver.common.by import By

        cells = self.d.find_elements(By.CSS_SELECTOR, f"{self.PANEL} .jp-CodeCell")
        return [(c.find_element(By.CSS_SELECTOR, ".jp-InputArea-editor").text,
                 c.find_element(By.CSS_SELECTOR, ".jp-Cell-outputArea")) for c in cells]

    def cell(self, contains: str):
        """The output area of the first code cell whose source contains ``contains``."""
        for src, out in self.code_cells():
            if contains in src:
                return out
        raise AssertionError(f"no code cell contains {contains!r}")

    def errors(self) -> list[str]:
        """Texts of outputs that show an error or a traceback (none in a good run)."""
        from selenium.webdriver.common.by import By

        found = []
        for e in self.d.find_elements(By.CSS_SELECTOR, f"{self.PANEL} .jp-OutputArea-output"):
            text = e.text
            if any(m in text for m in ERROR_MARKERS):
                found.append(text[-2000:])
        return found


@contextlib.contextmanager
def lab_session(root: Path, log: Path):
    """JupyterLab on ``root`` (server log in ``log``) and Chromium; yields a :class:`Lab`."""
    with jupyterlab(root, log) as (base, token), chrome(1400, 1000) as driver:
        yield Lab(driver, base, token, root)


class Widgets:
    """The ipywidgets 8 controls inside one output area ``root`` (a selenium element), found by their label."""

    def __init__(self, lab: Lab, root):
        self.lab, self.root = lab, root

    def _by_label(self, css: str, label: str):
        from selenium.webdriver.common.by import By

        def labels(scope) -> list[str]:
            return [x.text.strip().rstrip(":") for x in scope.find_elements(By.CSS_SELECTOR, ".widget-label, label")]

        found = self.root.find_elements(By.CSS_SELECTOR, css)
        seen = [labels(w) for w in found]
        for w, own in zip(found, seen):  # its own description first
            if any(t == label or t.startswith(label + " ") for t in own):
                return w
        for w in found:  # else a label beside it (the only control of that kind there)
            parent = w.find_element(By.XPATH, "./..")
            if label in labels(parent) and len(parent.find_elements(By.CSS_SELECTOR, css)) == 1:
                return w
        raise AssertionError(f"no {css} labelled {label!r}; labels there: {seen}")

    def slider_keys(self, label: str, key: str, times: int = 1) -> None:
        """Focus slider ``label``'s handle and press ``key`` (e.g. Keys.ARROW_RIGHT) ``times`` times."""
        from selenium.webdriver.common.by import By

        handle = self._by_label(".widget-slider", label).find_element(By.CSS_SELECTOR, ".noUi-handle")
        handle.click()
        handle.send_keys(*([key] * times))

    def slider_readout(self, label: str) -> str:
        from selenium.webdriver.common.by import By

        return self._by_label(".widget-slider", label).find_element(By.CSS_SELECTOR, ".widget-readout").text

    def toggle(self, text: str) -> None:
        """Click the toggle button showing ``text``."""
        from selenium.webdriver.common.by import By

        buttons = [b for b in self.root.find_elements(By.CSS_SELECTOR, "button.widget-toggle-button")
                   if b.text.strip() == text]
        assert buttons, f"no toggle button {text!r}"
        buttons[0].click()

    def toggle_in(self, label: str, text: str) -> None:
        """Click button ``text`` of the toggle-button group labelled ``label``."""
        from selenium.webdriver.common.by import By

        group = self._by_label(".widget-toggle-buttons", label)
        next(b for b in group.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == text).click()

    def checkbox(self, label: str) -> None:
        from selenium.webdriver.common.by import By

        self._by_label(".widget-checkbox", label).find_element(By.CSS_SELECTOR, "input").click()

    def dropdown(self, label: str):
        """The ``<select>`` of dropdown ``label`` (selenium ``Select``)."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        return Select(self._by_label(".widget-dropdown", label).find_element(By.CSS_SELECTOR, "select"))

    def label_text(self) -> str:
        """The text of the first HTML widget (the viewers' sample line)."""
        from selenium.webdriver.common.by import By

        return self.root.find_element(By.CSS_SELECTOR, ".widget-html-content").text

    def images(self) -> list[str]:
        """The ``src`` of every image in the widget's Output area (read in one call: the viewer replaces them)."""
        return self.lab.d.execute_script(
            "return [...arguments[0].querySelectorAll('.widget-output img')].map(i => i.src)", self.root)

    def screenshot(self) -> bytes:
        """PNG of the whole widget: the browser window is made tall enough for it, then restored."""
        size = self.lab.d.get_window_size()
        height = self.lab.d.execute_script("return arguments[0].getBoundingClientRect().height", self.root)
        try:
            if height + 400 > size["height"]:
                self.lab.d.set_window_size(size["width"], int(height) + 400)
            self.lab.d.execute_script("arguments[0].scrollIntoView({block: 'start'})", self.root)
            time.sleep(0.3)  # the panel re-lays out after the resize
            return self.root.screenshot_as_png
        finally:
            self.lab.d.set_window_size(size["width"], size["height"])

    def output(self):
        from selenium.webdriver.common.by import By

        return self.root.find_element(By.CSS_SELECTOR, ".widget-output")

    def act(self, action, what: str, timeout: float = 30.0) -> tuple[float, bytes, bytes]:
        """Do ``action()`` and wait, in the page, until the Output's images have changed and are decoded;
        ``(seconds from the user's input event in the page to the frame showing the new picture, screenshot of the
        Output before, after)``; the browser's own clock, so the WebDriver's command overhead is not counted."""
        from selenium.common.exceptions import TimeoutException

        self.lab.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", self.root)
        before_png = self.output().screenshot_as_png
        self.lab.d.execute_script(_STASH, self.root)
        action()
        try:
            dt = self.lab.d.execute_async_script(_WAIT_NEW_PICTURE, self.root, timeout * 1000)
        except TimeoutException:
            dt = None
        if dt is None:
            raise AssertionError(f"the picture did not change within {timeout:.0f} s after {what}; the widget shows "
                                 f"{self.root.text[:300]!r} and {len(self.images())} images")
        return dt, before_png, self.output().screenshot_as_png


# before an action: remember the Output's <img> sources, and the time of the user's first input event (captured
# on the widget before any handler sees it)
_STASH = """
const root = arguments[0];
root.__before = [...root.querySelectorAll('.widget-output img')].map(i => i.src).join('|');
root.__t0 = null;
if (!root.__listening) {
  for (const type of ['pointerdown', 'keydown', 'change']) {
    root.addEventListener(type, () => { if (root.__t0 === null) root.__t0 = performance.now(); }, true);
  }
  root.__listening = true;
}
"""
# resolves with the seconds from that input event to the frame in which the new images (sources differ from the
# stashed ones, every image decoded) are on the page; null after the limit [ms]
_WAIT_NEW_PICTURE = """
const root = arguments[0], limit = arguments[1], done = arguments[arguments.length - 1], start = performance.now();
(function check() {
  const imgs = [...root.querySelectorAll('.widget-output img')];
  const now = imgs.map(i => i.src).join('|');
  if (imgs.length && now !== root.__before && imgs.every(i => i.complete && i.naturalWidth > 0)) {
    return done((performance.now() - (root.__t0 === null ? start : root.__t0)) / 1000);
  }
  if (performance.now() - start > limit) return done(null);
  requestAnimationFrame(check);
})();
"""
