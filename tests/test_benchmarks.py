"""The benchmark harness (``benchmarks/common.py``, ``benchmarks/report.py``): fast checks, no training."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common, report  # noqa: E402


def test_interleaved_alternates_and_times_every_variant():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up a, b; then rounds, order alternating
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        common.interleaved({"a": lambda: None}, 0)
    with pytest.raises(ValueError, match="no values"):
        common.median([])


def test_notebook_config_is_what_the_notebook_builds():
    cfg, params = common.notebook_config(ENCODER_WEIGHTS=None, IMG_SIZE=96, EPOCHS=3)
    assert (cfg.img_size, cfg.epochs, cfg.encoder_weights) == (96, 3, None)
    assert cfg.checkpoint_minutes == params["CHECKPOINT_MINUTES"]
    assert cfg.log_images == 4 and cfg.model == "unet_mobilenet_v2"
    original, _ = common.notebook_config(RECIPE="original")
    assert original.optimizer == "radam_lookahead"
    with pytest.raises(KeyError, match="NO_SUCH_PARAMETER"):
        common.notebook_params(NO_SUCH_PARAMETER=1)


def _sample(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    rows = [{"img_size": 96, "ratio": 1.01}]
    md = "### Overhead\n\n" + common.table(rows, ["img_size", "ratio"], markdown=True)
    common.write_results("overhead", rows, [common.target("Trainer / loop, 96 px", 1.01, "<= 1.03", True, "n/a")],
                         md, folder / "overhead.json", seconds=12.3)
    common.write_results("checkpoint", [], [common.target("blocked share", 0.031, "< 0.02", False,
                                                          "0.9 s save against a 30 s epoch")],
                         "### Checkpoint\n\ntext", folder / "checkpoint.json")
    gpu = json.loads((folder / "checkpoint.json").read_text())
    gpu.update(bench="gpu", markdown="### GPU\n\nfrom a GPU machine", targets=[])
    gpu["machine"] = {**gpu["machine"], "date": "2020-01-01T00:00:00+00:00", "gpu": "NVIDIA H200"}
    (folder / "gpu.json").write_text(json.dumps(gpu))
    return folder


def test_report_renders_targets_sections_in_order_and_kept_results(tmp_path):
    folder = _sample(tmp_path)
    doc = json.loads((folder / "overhead.json").read_text())
    assert doc["bench"] == "overhead" and doc["seconds"] == 12.3 and doc["machine"]["cores"] >= 1
    out = report.write_report(folder, tmp_path / "BENCHMARKS.md", since="2021-01-01")
    text = out.read_text()
    assert text.index("### Overhead") < text.index("### Checkpoint") < text.index("### GPU")  # ORDER, not names
    assert "| overhead | Trainer / loop, 96 px | 1.01 | <= 1.03 | yes | - |" in text  # met: no reason shown
    assert "| checkpoint | blocked share | 0.031 | < 0.02 | **no** | 0.9 s save against a 30 s epoch |" in text
    assert "`gpu` (2020-01-01" in text and "GPU NVIDIA H200" in text and "kept from an earlier run" in text
    assert "| 96 | 1.01 |" in text


def test_report_names_a_broken_results_file(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="x.json is not valid JSON.*rerun"):
        report.load_results(tmp_path)
    (tmp_path / "x.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match=r"lacks \['bench', 'markdown'\]"):
        report.load_results(tmp_path)
    with pytest.raises(ValueError, match="build it with benchmarks.common.target"):
        common.write_results("x", [], [{"name": "t"}], "", tmp_path / "y.json")
