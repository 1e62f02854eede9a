"""notebooks/hyperparameter_study.ipynb headless in SMOKE mode: synthetic blobs (twice: the rerun skips
everything) and ISBI 2012 membranes (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
import math

import nbformat
import pytest
from conftest import SHARED_DATA, need

from seglib.hparam import HParamRun
from seglib.nbrun import DEMO, NOTEBOOKS, run_notebook

ISBI = SHARED_DATA / "isbi2012_membrane"


def _no_errors(path) -> str:
    """The executed notebook's printed text, after checking that no cell failed."""
    nb = nbformat.read(path, as_version=4)
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text.append(out.get("text", "") if out.get("output_type") == "stream" else "")
    return "".join(text)


def _check_feedback(text: str, trials: dict[str, list[str]], epochs: int = 2) -> None:
    """Per study ``trial k/N: <key>`` lines in plan order, and every trained trial's epoch table: a header and
    rows ``1/E`` .. ``E/E`` before its result line (reused trials train nothing, so print no rows)."""
    for study, keys in trials.items():
        for k, key in enumerate(keys, 1):
            start = text.index(f"  [{study}] trial {k}/{len(keys)}: {key} ")
            block = text[start:text.index(f"    {key}: val Dice", start)].splitlines()[1:]
            if block:
                assert block[0].split()[:3] == ["epoch", "train_loss", "val_fg_dice"]
                assert [line.split()[0] for line in block[1:]] == [f"{e}/{epochs}" for e in range(1, epochs + 1)]


def _check_summary(summary: dict, n_trials: int) -> None:
    assert summary["notebook"] == "hyperparameter_study"
    assert len(summary["trials"]) == n_trials
    for t in summary["trials"]:
        s = t["scores"]
        assert 0.0 <= s["val_fg_dice"] <= 1.0 and 0.0 <= s["train_fg_dice"] <= 1.0 and math.isfinite(s["val_loss"])
        assert t["config"]["epochs"] == 2 and t["state"] == "complete"
    best = summary["best"]
    assert best["metric"] == "val_fg_dice" and best["value"] == max(t["scores"]["val_fg_dice"] for t in summary["trials"])
    assert best["trial"] in {t["key"] for t in summary["trials"]} and "optimizer" in best["config"]


def test_notebook_parameters_and_demo_entry():
    nb = nbformat.read(NOTEBOOKS / "hyperparameter_study.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for name in ("DATA", "WORKDIR", "INVERT_MASK", "WIDTH_DIVISOR", "TRIAL_EPOCHS", "STUDIES", "BATCH_SIZE", "SEED",
                 "SMOKE", "STORAGE", "PRUNER", "LR_FROM", "CPU_THREADS"):
        assert f"\n{name} = " in "\n" + params.source, name
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # committed without outputs
    assert DEMO["hyperparameter_study"]["EXPERIMENT"]


@pytest.mark.slow
def test_notebook_smoke_synthetic_and_rerun(tmp_path):
    params = {"SMOKE": True, "WORKDIR": str(tmp_path / "w"), "STUDIES": ["loss", "augmentation"], "CPU_THREADS": 1}
    out = run_notebook("hyperparameter_study", params, out_dir=tmp_path)
    text = _no_errors(out)
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    _check_summary(summary, 2 + 2)  # SMOKE: each study cut to its base value and one other
    _check_feedback(text, {s: [t["key"] for t in summary["trials"] if t["study"] == s] for s in ("loss", "augmentation")})
    assert text.count("epoch  train_loss") == 3  # switching, bce_switching, rotate_flips trained; aug-none reused
    assert [r["optimizer"] for r in summary["lr_search"]["rows"]] == ["adam", "adagrad"]
    assert all(r["decade_steps"] > 0 and r["range_steps"] > 0 for r in summary["lr_search"]["rows"])
    reused = [t for t in summary["trials"] if t["reused_from"]]
    assert [t["key"].rsplit("-", 1)[0] for t in reused] == ["aug-none"]  # the base config, trained once in "loss"
    assert (tmp_path / "w" / "optuna_journal.log").exists()
    runs = {p: p.read_text() for p in (tmp_path / "w" / "trials").glob("*/*/runs.jsonl")}
    out2 = run_notebook("hyperparameter_study", params, out_dir=tmp_path / "again")
    _no_errors(out2)
    assert {p: p.read_text() for p in (tmp_path / "w" / "trials").glob("*/*/runs.jsonl")} == runs  # nothing rerun
    again = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert again["trials"] == summary["trials"] and again["best"] == summary["best"]
    # the same study from Python: LR search and trials come from WORKDIR; the explorer renders headless
    run = HParamRun("synthetic", workdir=tmp_path / "w", smoke=True, img_size=64, width_divisor=16, trial_epochs=2)
    run.prepare()
    rows = run.lr_search(["adam", "adagrad"], ["bce"], probe_epochs=1, range_steps=20)
    assert rows == summary["lr_search"]["rows"]
    assert summary["trials"][0]["config"]["lr"] == run.lrs("decade")["adam"] == rows[0]["decade_lr"]
    run.make_plans(["loss", "augmentation"], run.lrs("decade"))
    assert [r["key"] for r in run.results()] == [t["key"] for t in summary["trials"]]
    explorer = run.explorer(n=2)
    explorer.study.value = "augmentation"
    explorer.config.value = 1
    assert explorer.render_count >= 2 and explorer.current["params"] == {"augment": "rotate_flips"}
    assert len(explorer.output.outputs) == 2


@pytest.mark.slow
def test_notebook_smoke_isbi_membrane(tmp_path):
    need(ISBI)
    params = {"SMOKE": True, "DATA": str(ISBI), "INVERT_MASK": True, "WORKDIR": str(tmp_path / "w"),
              "STUDIES": ["train_fraction"], "LR_SEARCH": False, "CPU_THREADS": 1}
    out = run_notebook("hyperparameter_study", params, out_dir=tmp_path)
    _no_errors(out)
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["data"]["counts"] == {"train": 8, "val": 4}
    _check_summary(summary, 2)
    assert summary["lr_search"]["lr_from"] == "seed"
    assert [t["config"]["train_fraction"] for t in summary["trials"]] == [0.2, 1.0]
    assert all(t["config"]["invert"] for t in summary["trials"])
