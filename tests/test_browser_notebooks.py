"""The three notebooks opened in JupyterLab in headless Chromium, Run All in SMOKE mode, then worked as a person
does: every plot cell shows a picture and no cell an error; the viewers' slider, toggles, opacity and worst-first
change the picture, and the IoU shown is seglib's for that image; the study explorer changes table and images.

Screenshots go to the test's tmp folder, and to ``$SEGLIB_SCREENSHOTS`` (e.g. ``docs``) when set. Response times
(the user's input event to the frame showing the new picture, on the browser's clock) are printed and written to
``<pytest base temp>/response_times.json``.

``SEGLIB_BROWSER_RUNS=<folder>`` opens the ``make demo`` runs instead (``<folder>/<EXPERIMENT>`` with the demo's
parameters, :data:`seglib.nbrun.DEMO`; the README's pictures come from them): Run All then finds each run complete.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch
from browser import changed_fraction, require_browser, save_screenshot
from lab import Widgets, lab_session, parameterized_copy

from seglib.nbrun import DEMO, NOTEBOOKS

pytestmark = pytest.mark.slow
# the bound on one viewer action (CPU, 224 px images, action to new picture in the page) is 0.5 s: timing
# targets are checked by measurement (the printed times, on a quiet machine), not here; this catches a stalled viewer
SLOW = 5.0
CHANGED = 0.001  # share of the Output's pixels that must differ after an action (a title alone changes ~0.3 %)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("lab")
    with lab_session(root, root / "jupyterlab.log") as session:
        session.root = root
        yield session


@pytest.fixture(autouse=True)
def _free_kernels(lab):
    yield
    lab.shutdown_kernels()  # each notebook's kernel (and its memory) ends with its test


@pytest.fixture(scope="module")
def times(tmp_path_factory):
    out: dict[str, dict[str, float]] = {}
    yield out
    path = tmp_path_factory.getbasetemp() / "response_times.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"\nviewer response times [s] (action to new picture in the page): {json.dumps(out)} -> {path}")


def case(lab, name: str, smoke_parameters: dict) -> tuple[dict, bool, dict | None, Path]:
    """``(parameters, smoke, synthetic kwargs, WORKDIR)`` of notebook ``name``: SMOKE with ``smoke_parameters`` in
    the server's folder, or the demo run under ``$SEGLIB_BROWSER_RUNS``."""
    runs = os.environ.get("SEGLIB_BROWSER_RUNS")
    if runs:
        params = dict(DEMO[name])
        params["WORKDIR"] = str(Path(runs).resolve() / params["EXPERIMENT"])
        return params, False, params.get("SYNTHETIC"), Path(params["WORKDIR"])
    params = {"SMOKE": True, "WORKDIR": str(lab.root / name), **smoke_parameters}
    return params, True, params.get("SYNTHETIC"), Path(params["WORKDIR"])


def run_notebook_in_browser(lab, name: str, parameters: dict, timeout: float = 600) -> float:
    """Copy notebook ``name`` with ``parameters`` into the server root, open it, Run All, check the outputs."""
    parameterized_copy(NOTEBOOKS / f"{name}.ipynb", lab.root / f"{name}.ipynb", parameters)
    lab.open(f"{name}.ipynb")
    seconds = lab.run_all(timeout)
    errors = lab.errors()
    assert not errors, f"{name}: a cell shows an error:\n" + "\n---\n".join(errors)
    for src, out in lab.code_cells():
        if re.search(r"display\(|plt\.show\(\)|\.show\(\)", src):
            shown = out.find_elements("css selector", "img, .widget-vbox")
            assert shown, f"{name}: the cell {src[:80]!r} shows no picture or widget"
    return seconds


def check_action(w: Widgets, action, what: str, times: dict) -> str:
    """Do ``action``; the picture changes (its time goes into ``times``); returns the label after it."""
    dt, before, after = w.act(action, what)
    frac = changed_fraction(before, after)
    assert frac >= CHANGED, f"{what}: only {frac:.2%} of the picture changed"
    times[what] = round(dt, 3)
    return w.label_text()


def work_viewer(w: Widgets, steps: list, times: dict, check, names: list[str], iou: dict) -> None:
    """Do each ``(action, what)`` of ``steps``; after each the picture changes and ``check(label, what)`` (which
    asserts the scores shown) returns the sample shown: the next one after "slider", seglib's lowest IoU after
    "worst first"."""
    for action, what in steps:
        name = check(check_action(w, action, what, times), what)
        if what == "slider":
            assert name == names[1]
        if what == "worst first":
            assert name == min(iou, key=iou.get), f"worst first shows {name}, seglib's worst is {min(iou, key=iou.get)}"


def shown_iou(label: str) -> tuple[str, float]:
    """``(sample name, IoU)`` from the viewer's label line: the name first, then ``IoU x.xxx`` somewhere."""
    m = re.match(r"(\S+)\s.*\bIoU ([0-9.]+|n/a)", label)
    assert m, f"unexpected viewer label {label!r}"
    return m.group(1), float(m.group(2))


def test_jetcar_viewer_in_the_browser(lab, times, tmp_path):
    from seglib.config import TrainConfig
    from seglib.inspect.render import per_image_iou
    from seglib.segmentation import SegmentationRun

    params, smoke, syn, wd = case(lab, "jetcar_segmentation", {
        "EXPERIMENT": "browser", "SYNTHETIC": {"n_train": 16, "n_val": 8, "n_test": 4, "size": 224}})
    seconds = run_notebook_in_browser(lab, "jetcar_segmentation", params)
    print(f"jetcar notebook: Run All {seconds:.0f} s")
    # seglib's per-image IoU of each validation image, from best.pt in this process
    cfg = TrainConfig.from_dict(torch.load(wd / "checkpoints" / "last.pt", weights_only=True)["config"])
    run = SegmentationRun(cfg, "synthetic", workdir=wd, smoke=smoke, synthetic_kwargs=syn)
    run.prepare(check=False)
    p = run.predictions("val")
    assert p["images"][0].shape[:2] == (syn["size"],) * 2
    iou = {n: per_image_iou(pr, t, cfg.n_classes, cfg.ignore_index) for n, pr, t in zip(p["names"], p["pred"], p["true"])}

    from selenium.webdriver.common.keys import Keys

    def check(label: str, what: str) -> str:
        name, value = shown_iou(label)
        assert value == pytest.approx(iou[name], abs=6e-4), f"after {what}: {label!r} vs seglib {iou[name]:.4f}"
        if what == "opacity":
            assert w.slider_readout("opacity") == "0.55"
        return name

    w = Widgets(lab, lab.cell("viewer.show()"))
    t = times.setdefault("jetcar", {})
    assert check(w.label_text(), "opening") == p["names"][0]
    save_screenshot(w.screenshot(), "browser_jetcar_viewer.png", tmp_path)
    steps = [
        (lambda: w.slider_keys("sample", Keys.ARROW_RIGHT), "slider"),
        (lambda: w.toggle_in("mask", "true"), "true"),
        (lambda: w.toggle_in("mask", "both"), "both"),
        (lambda: w.slider_keys("opacity", Keys.ARROW_RIGHT, 1), "opacity"),
        (lambda: w.checkbox("worst first"), "worst first"),
    ]
    work_viewer(w, steps, t, check, p["names"], iou)
    save_screenshot(w.screenshot(), "browser_jetcar_viewer_both.png", tmp_path)
    assert max(t.values()) < SLOW, t


def test_depth_viewer_in_the_browser(lab, times, tmp_path):
    from selenium.webdriver.common.keys import Keys

    from seglib.config import TrainConfig
    from seglib.depthseg import DepthSegRun
    from seglib.inspect.render import binary_iou, depth_rmse

    params, smoke, syn, wd = case(lab, "depth_segmentation", {
        "EXPERIMENT": "browser_depth", "SYNTHETIC": {"n_bg": 3, "n_fg": 3, "per_pair": 2, "size": 224}})
    seconds = run_notebook_in_browser(lab, "depth_segmentation", params)
    print(f"depth notebook: Run All {seconds:.0f} s")
    cfg = TrainConfig.from_dict(torch.load(wd / "checkpoints" / "last.pt", weights_only=True)["config"])
    run = DepthSegRun(cfg, "synthetic", workdir=wd, smoke=smoke, synthetic_kwargs=syn)
    run.prepare()
    p = run.predictions("val")
    assert p["images"][0].shape[:2] == (syn["size"],) * 2
    iou = {n: binary_iou(pm, tm) for n, pm, tm in zip(p["names"], p["pred_masks"], p["true_masks"])}
    rmse = {n: depth_rmse(pd, td, v) for n, pd, td, v in zip(p["names"], p["pred_depths"], p["true_depths"], p["valid"])}

    def check(label: str, what: str) -> str:
        name, value = shown_iou(label)
        assert value == pytest.approx(iou[name], abs=6e-4), f"after {what}: {label!r} vs seglib IoU {iou[name]:.4f}"
        m = re.search(r"RMSE ([0-9.]+)", label)
        assert m and float(m.group(1)) == pytest.approx(rmse[name], abs=6e-5), f"{label!r} vs RMSE {rmse[name]:.5f}"
        return name

    w = Widgets(lab, lab.cell("viewer.show()"))
    t = times.setdefault("depth", {})
    assert check(w.label_text(), "opening") == p["names"][0]
    save_screenshot(w.screenshot(), "browser_depth_viewer.png", tmp_path)
    steps = [
        (lambda: w.slider_keys("sample", Keys.ARROW_RIGHT), "slider"),
        (lambda: w.toggle_in("mask", "true"), "mask true"),
        (lambda: w.toggle_in("depth", "true"), "depth true"),
        (lambda: w.toggle_in("depth", "error"), "depth error"),
        (lambda: w.slider_keys("opacity", Keys.ARROW_LEFT, 2), "opacity"),
        (lambda: w.checkbox("worst first"), "worst first"),
    ]
    work_viewer(w, steps, t, check, p["names"], iou)
    save_screenshot(w.screenshot(), "browser_depth_viewer_error.png", tmp_path)
    assert max(t.values()) < SLOW, t


def test_study_explorer_in_the_browser(lab, times, tmp_path):
    params, _, _, wd = case(lab, "hyperparameter_study", {
        "EXPERIMENT": "browser_study", "STUDIES": ["loss", "augmentation"], "SYNTHETIC": {"n_train": 16, "n_val": 8,
                                                                                      "size": 64}})
    seconds = run_notebook_in_browser(lab, "hyperparameter_study", params)
    print(f"study notebook: Run All {seconds:.0f} s")
    results = [json.loads(p.read_text()) for p in wd.rglob("result.json")]
    by_study: dict[str, list[str]] = {}
    for r in results:
        by_study.setdefault(r["study"], []).append(r["key"])
    assert set(by_study) == {"loss", "augmentation"} and all(len(v) >= 2 for v in by_study.values()), by_study

    w = Widgets(lab, lab.cell("explorer.show()"))
    t = times.setdefault("explorer", {})
    study, config = w.dropdown("study"), w.dropdown("config")
    first = study.first_selected_option.text
    assert w.label_text().split(":")[0] in by_study[first]
    save_screenshot(w.screenshot(), "browser_study_explorer.png", tmp_path)
    other = next(s for s in by_study if s != first)
    label = check_action(w, lambda: study.select_by_visible_text(other), "study", t)
    assert label.split(":")[0] in by_study[other], f"{label!r} is not a trial of study {other!r}: {by_study[other]}"
    config = w.dropdown("config")
    second = config.options[1].text
    label = check_action(w, lambda: config.select_by_index(1), "config", t)
    assert label.startswith(second) and label.split(":")[0] in by_study[other], (second, label)
    assert max(t.values()) < SLOW, t


def test_a_viewer_action_that_changes_nothing_fails(lab, tmp_path):
    """The check itself: a viewer whose opacity slider no longer re-renders (its observers removed in the kernel)
    makes ``Widgets.act`` fail, while the sample slider still passes."""
    import nbformat
    from selenium.webdriver.common.keys import Keys

    code = """import numpy as np
from seglib.inspect.widgets import SegmentationViewer
rng = np.random.default_rng(0)
images = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(3)]
masks = [rng.integers(0, 3, (224, 224)) for _ in range(3)]
viewer = SegmentationViewer(images, masks, masks[::-1], class_names=["a", "b", "c"])
viewer.opacity.unobserve_all()  # broken: the opacity slider no longer re-renders
viewer.show()"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nbformat.write(nb, lab.root / "broken_viewer.ipynb")
    lab.open("broken_viewer.ipynb")
    lab.run_all(120)
    w = Widgets(lab, lab.cell("viewer.show()"))
    w.act(lambda: w.slider_keys("sample", Keys.ARROW_RIGHT), "slider")
    with pytest.raises(AssertionError, match="did not change"):
        w.act(lambda: w.slider_keys("opacity", Keys.ARROW_RIGHT), "opacity", timeout=5)
    assert w.slider_readout("opacity") == "0.55"  # the slider moved; the picture did not follow
