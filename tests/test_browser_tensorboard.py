"""TensorBoard on SMOKE runs' folders, checked through its HTTP data API and in headless Chromium.

Three small synthetic runs (``resume_driver.py`` subprocesses, 3 epochs each) are served by one TensorBoard
(127.0.0.1, a free port) as the runs ``reference`` (uninterrupted), ``killed_mid_epoch`` (SIGKILL after optimizer
step 6, then resumed) and ``killed_in_save`` (SIGKILL while epoch 2's checkpoint is written, after epoch 2's
TensorBoard events were flushed, then resumed: the resume's ``purge_step`` must drop epoch 2's first copy).

Through the data API: every scalar tag of every run has the steps 1..3 once each, the resumed runs' values equal
the reference's (wall-clock durations excluded), and ``val/predictions`` has one decodable PNG per epoch of the
prediction grid's size (equal, pixel for pixel, to the reference's). In Chromium: the scalars page draws one
3-point curve per run for the loss / mIoU tags (the three identical), the images page loads the prediction
grids with the steps 1..3 on their sliders; screenshots ``tensorboard_scalars.png`` and ``tensorboard_images.png``
go to the test's tmp folder (and ``$SEGLIB_SCREENSHOTS``).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import chrome, free_port, require_browser, save_screenshot, server, wait_for
from killing import run_driver
from PIL import Image

pytestmark = pytest.mark.slow

DRIVER = Path(__file__).with_name("resume_driver.py")
EPOCHS = 3
RUNS = ("reference", "killed_mid_epoch", "killed_in_save")
CORE_TAGS = {"train/loss", "val/loss", "val/miou", "lr", "img_size"}  # logged by SegmentationState.end_epoch
SHOWN_TAGS = ("train/loss", "val/loss", "val/miou")  # the scalars page is filtered to these for the screenshot
IMAGE_TAG = "val/predictions"
LOG_IMAGES = 4  # TrainConfig.log_images: rows of the prediction grid


def drive(workdir: Path, *args, expect_kill: bool = False) -> str:
    """Run ``resume_driver.py workdir synthetic *args``; returns its stdout. Fails unless it exits 0, or (with
    ``expect_kill``) dies of SIGKILL."""
    return run_driver(DRIVER, workdir, "synthetic", *args, expect_kill=expect_kill)


def raw_steps(tb_dir: Path, tag: str) -> list[int]:
    """The steps of ``tag`` in every event file of ``tb_dir`` (file order, no purging: what is on disk)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):
        for ev in EventFileLoader(str(f)).Load():
            steps += [ev.step for v in ev.summary.value if v.tag == tag]
    return steps


def last_epoch(workdir: Path) -> int:
    """The epoch committed in ``workdir/checkpoints/last.pt``."""
    return int(torch.load(workdir / "checkpoints" / "last.pt", weights_only=True)["epoch"])


def killed_mid_epoch(workdir: Path) -> str:
    """SIGKILL mid-epoch, check what is on disk, resume to the end; returns the resume's stdout."""
    # a checkpoint after every step (--minutes 0); killed right after step 6 (epoch 2, batch 2 of 4), so the
    # last commit is epoch 1 + 1 batch; epoch 1's events are written once, epoch 2's only by the resumed run
    drive(workdir, "--minutes", "0", "--kill-at-step", "6", expect_kill=True)
    assert last_epoch(workdir) == 1 and raw_steps(workdir / "tensorboard", "val/loss") == [1]
    return drive(workdir)


def killed_in_save(workdir: Path) -> str:
    """SIGKILL inside epoch 2's checkpoint write, check what is on disk, resume to the end; returns its stdout."""
    # no mid-epoch checkpoints (--minutes 1000); the torch.save calls are last@1, best@1, last@2, ... and
    # end_epoch writes + flushes an epoch's TensorBoard events *before* it saves that epoch, so the 3rd save
    # (epoch 2's last.pt, the epoch's commit point) dies half-written with epoch 2 already in the event file:
    # the resume restarts epoch 2 (purge_step 2) and writes epoch 2 again
    drive(workdir, "--minutes", "1000", "--kill-in-save", "3", expect_kill=True)
    assert last_epoch(workdir) == 1, "the kill must land before epoch 2 is committed"
    assert raw_steps(workdir / "tensorboard", "val/loss") == [1, 2], "epoch 2's first copy must be on disk"
    return drive(workdir)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    """A TensorBoard logdir with the three runs as sub-folders (symlinks to each WORKDIR's ``tensorboard``)."""
    require_browser()
    root = tmp_path_factory.mktemp("tb_runs")
    work = {name: root / name for name in RUNS}
    # the three at once (single-threaded processes; the synthetic data set is built atomically, first one wins)
    with ThreadPoolExecutor(3) as pool:
        ref = pool.submit(drive, work["reference"])
        mid = pool.submit(killed_mid_epoch, work["killed_mid_epoch"])
        save = pool.submit(killed_in_save, work["killed_in_save"])
        assert f"RESUMED_FROM None EPOCHS {EPOCHS}" in ref.result()
        assert f"RESUMED_FROM {{'epoch': 2, 'batch': 1}} EPOCHS {EPOCHS}" in mid.result()
        assert f"RESUMED_FROM {{'epoch': 2, 'batch': 0}} EPOCHS {EPOCHS}" in save.result()
    # on disk epoch 2 is there twice (the purge has something to do); TensorBoard must show it once
    assert raw_steps(work["killed_in_save"] / "tensorboard", "val/loss") == [1, 2, 2, 3]
    logs = root / "logdir"
    logs.mkdir()
    for name in RUNS:
        (logs / name).symlink_to(work[name] / "tensorboard", target_is_directory=True)
    return logs


@pytest.fixture(scope="module")
def tensorboard(logdir, tmp_path_factory):
    """``http://127.0.0.1:PORT`` of a TensorBoard serving ``logdir``; HOME and TMPDIR in tmp, stopped at the end.

    ``--load_fast=false``: the Python loader honours the ``purge_step`` marker (a SessionLog START) and otherwise
    keeps every copy of a step, so a resume that forgot ``purge_step`` shows a duplicate step here. The default Rust
    data server instead drops earlier records whenever a step goes backwards, which would hide that bug."""
    home = tmp_path_factory.mktemp("tb_home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HOME=str(home), TMPDIR=str(home))
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
           "--port", str(port), "--reload_interval", "1", "--load_fast=false"]
    with server(cmd, url + "/data/runs", home / "tensorboard.log", env=env):
        yield url


def get(url: str, path: str, **query) -> bytes:
    """The body of ``GET url/path?query`` (fails on a non-200 answer)."""
    full = f"{url}/{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(full, timeout=30) as r:
        assert r.status == 200, full
        return r.read()


def get_json(url: str, path: str, **query):
    """:func:`get`'s body parsed as JSON."""
    return json.loads(get(url, path, **query))


def loaded(url: str) -> dict | None:
    """``{run: scalar tags}`` once every run's reload is complete (all core tags at step ``EPOCHS``, and the
    prediction grid's last epoch), else None: TensorBoard loads event files in the background."""
    tags = get_json(url, "data/plugin/scalars/tags")
    images = get_json(url, "data/plugin/images/tags")
    if set(tags) != set(RUNS) or set(images) != set(RUNS):
        return None
    for run in RUNS:
        if not CORE_TAGS <= set(tags[run]) or IMAGE_TAG not in images[run]:
            return None
        for tag in tags[run]:
            if get_json(url, "data/plugin/scalars/scalars", run=run, tag=tag)[-1][1] != EPOCHS:
                return None
        if get_json(url, "data/plugin/images/images", run=run, tag=IMAGE_TAG)[-1]["step"] != EPOCHS:
            return None
    return {run: sorted(tags[run]) for run in RUNS}


def grid_shape(size: int) -> tuple[int, int]:
    """``(height, width)`` [px] of the prediction grid for ``size`` px images (seglib.inspect.prediction_grid)."""
    return LOG_IMAGES * size + 2 * (LOG_IMAGES - 1), 3 * size + 4


def test_data_api_one_step_per_epoch_and_exact_resume(tensorboard):
    url = tensorboard
    tags = wait_for(lambda: loaded(url), 60, "TensorBoard to load the three runs", poll=0.5)
    assert sorted(get_json(url, "data/runs")) == sorted(RUNS)
    assert tags["killed_mid_epoch"] == tags["killed_in_save"] == tags["reference"], tags
    series = {run: {tag: get_json(url, "data/plugin/scalars/scalars", run=run, tag=tag) for tag in tags[run]}
              for run in RUNS}
    for run in RUNS:
        for tag, points in series[run].items():  # points: [wall_time, step, value]
            assert [p[1] for p in points] == list(range(1, EPOCHS + 1)), (run, tag, points)
            if "seconds" in tag:  # wall-clock durations differ between runs
                continue
            ref = [p[2] for p in series["reference"][tag]]
            assert all(math.isclose(p[2], r, rel_tol=1e-6, abs_tol=1e-9) for p, r in zip(points, ref)), \
                (run, tag, [p[2] for p in points], ref)
    sizes = {p[1]: int(p[2]) for p in series["reference"]["img_size"]}
    assert sizes == {1: 64, 2: 64, 3: 96}  # the resize schedule {1: 64, 3: 96} of resume_driver.py
    grids = {}
    for run in RUNS:
        entries = get_json(url, "data/plugin/images/images", run=run, tag=IMAGE_TAG)
        assert [e["step"] for e in entries] == list(range(1, EPOCHS + 1)), (run, entries)
        for e in entries:
            png = get(url, "data/plugin/images/individualImage?" + e["query"])
            assert png[:8] == b"\x89PNG\r\n\x1a\n", (run, e)
            img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            assert img.shape[:2] == grid_shape(sizes[e["step"]]), (run, e["step"], img.shape)
            assert img.std() > 10, (run, e["step"])  # pictures and masks, not a blank image
            grids[run, e["step"]] = img
    for run in RUNS[1:]:  # an exact resume predicts exactly what the uninterrupted run predicted
        for step in range(1, EPOCHS + 1):
            assert np.array_equal(grids[run, step], grids["reference", step]), (run, step)


DEEP = """
const deep = (root, sel) => { const out = [];
  (function walk(r) { for (const e of r.querySelectorAll('*')) { if (e.matches(sel)) out.push(e);
                                                               if (e.shadowRoot) walk(e.shadowRoot); } })(root);
  return out; };
const text = () => [document, ...deep(document, '*').filter(e => e.shadowRoot).map(e => e.shadowRoot)]
  .map(r => Array.from(r.childNodes).map(n => n.innerText || n.textContent || '').join(' ')).join(' ');
"""
# one entry per scalar card: its tag and the SVG path ("d") of each run's line (Plottable, in shadow DOM)
SCALAR_CARDS = DEEP + """
return [deep(document, 'tf-scalar-card').map(c => [c.tag, deep(c.shadowRoot || c, 'path.line')
          .map(p => p.getAttribute('d') || '')]), text()];
"""
# one entry per image card: run, tag, steps on its slider, and the shown <img>'s natural size (0 until loaded)
IMAGE_CARDS = DEEP + """
return [deep(document, 'tf-image-loader').map(c => { const im = deep(c.shadowRoot || c, 'img')[0];
          return [c.run, c.tag, (c._steps || []).map(s => s.step), im ? im.naturalWidth : 0,
                  im ? im.naturalHeight : 0, !!(im && im.complete)]; }), text()];
"""


def test_scalars_and_images_pages_in_chromium(tensorboard, tmp_path):
    url = tensorboard
    wait_for(lambda: loaded(url), 60, "TensorBoard to load the three runs", poll=0.5)
    with chrome() as driver:
        # the legacy scalars dashboard, filtered to the loss / mIoU tags, smoothing off (the raw curves)
        driver.get(f"{url}/?darkMode=false#scalars&tagFilter={urllib.parse.quote('loss|miou')}"
                   "&_smoothingWeight=0")

        def curves():
            cards, _ = driver.execute_script(SCALAR_CARDS)
            drawn = {tag: paths for tag, paths in cards if tag in SHOWN_TAGS and len(paths) == len(RUNS)
                     and all(paths)}
            return drawn if set(drawn) == set(SHOWN_TAGS) else None

        drawn = wait_for(curves, 60, "a curve per run on the train/loss, val/loss and val/miou cards", poll=0.5)
        for tag, paths in drawn.items():
            # an SVG polyline "M x,y L x,y L x,y": one vertex per step, so a duplicate step would add one;
            # the three runs' lines are the same line (exact resume)
            assert all(p.count("L") == EPOCHS - 1 and p.count("M") == 1 for p in paths), (tag, paths)
            assert len(set(paths)) == 1, (tag, paths)
        _, page_text = driver.execute_script(SCALAR_CARDS)
        for name in (*SHOWN_TAGS, *RUNS):
            assert name in page_text, name
        save_screenshot(driver.get_screenshot_as_png(), "tensorboard_scalars.png", tmp_path)

        driver.get(f"{url}/?darkMode=false#images")

        def grids():
            cards, _ = driver.execute_script(IMAGE_CARDS)
            shown = [c for c in cards if c[1] == IMAGE_TAG and c[2] and c[3] > 0 and c[5]]
            return cards if len(shown) == len(RUNS) else None

        cards = wait_for(grids, 60, "the prediction grid of every run to load", poll=0.5)
        height, width = grid_shape(96)  # the slider starts at the last step, epoch 3 at 96 px
        assert sorted(c[0] for c in cards) == sorted(RUNS)
        for run, tag, steps, w, h, _ in cards:
            assert tag == IMAGE_TAG and steps == list(range(1, EPOCHS + 1)), (run, tag, steps)
            assert (h, w) == (height, width), (run, w, h)
        _, page_text = driver.execute_script(IMAGE_CARDS)
        assert IMAGE_TAG in page_text
        save_screenshot(driver.get_screenshot_as_png(), "tensorboard_images.png", tmp_path)
