"""Both engines train the same CamVid subset with the same seed and configuration; their weights and recorded
numbers are equal, and each engine resumes the other's checkpoint.

What is shared and what differs. Data order and augmentation come from ``(seed, epoch, sample index)`` in
both engines, the initial weights from the same seeded ``build_model()``, and the loss, optimizer and
scheduler objects from the same seglib registries. Catalyst computes the loss in three
``CriterionCallback``s (Dice, IoU, BCE) summed by a weighted-sum ``MetricAggregationCallback``; the three
criteria share one evaluation of the terms per batch, so the gradient graph equals the fused seglib loss's.
What differs by design is where randomness is drawn: Catalyst reseeds Python/NumPy/torch to
``seed + epoch`` at every epoch and loader start, seglib seeds once and carries one stream (saved in its
checkpoints). This U-Net has no dropout and seglib's data randomness never touches the global RNGs, so
nothing random is drawn from them in either loop; with dropout or stochastic depth the engines would
agree only statistically. Everything else is one code path: both engines drive the same
``seglib.train.state.TrainingState``, whose epoch loss means (per batch, weighted by valid samples, float64)
replace Catalyst's own loader averages.

So on CPU the weights after each epoch are bit-identical, and so are the recorded train and validation losses,
mIoU and pixel accuracy. (When the three terms were computed separately, last-bit different gradients made the
runs drift by up to 0.0045 mIoU and 0.017 pixel accuracy within 3-4 epochs.) A GPU (non-deterministic kernels,
AMP) would need a statistical tolerance instead.
"""

import json

import pytest
import torch
from catalyst_testing import catalyst_or_fail

catalyst_or_fail()

from seglib.config import TrainConfig  # noqa: E402
from seglib.experiment import subset_evenly  # noqa: E402
from seglib.segmentation import SegmentationRun  # noqa: E402

EPOCHS = 3


def make_run(camvid, workdir, epochs=EPOCHS):
    cfg = TrainConfig(experiment="engines", n_classes=12, ignore_index=11, img_size=64, batch_size=8, epochs=epochs,
                      lr=3e-3, encoder_weights=None, num_workers=0, augment="flip", seed=0)
    run = SegmentationRun(cfg, str(camvid), workdir=workdir)
    run.prepare(check=False)
    run.splits = {"train": subset_evenly(run.splits["train"], 32), "val": subset_evenly(run.splits["val"], 16)}
    return run


def same_history(a, b):
    return json.dumps(a) == json.dumps(b)  # NaN-aware (per-class IoU of absent classes)


def test_engines_agree_and_resume_each_other(tmp_path, camvid, one_thread):
    results = {e: make_run(camvid, tmp_path / e).train(progress=False, engine=e) for e in ("seglib", "catalyst")}
    hs, hc = results["seglib"].history, results["catalyst"].history
    assert len(hs) == len(hc) == EPOCHS
    for a, b in zip(hs, hc):
        assert (a["lr"], a["img_size"]) == (b["lr"], b["img_size"])
        for k in ("train_loss", "val_loss", "val_miou", "val_pixel_accuracy"):
            assert b[k] == a[k], (k, a, b)
    for h in (hs, hc):
        assert h[-1]["val_miou"] - h[0]["val_miou"] > 0.02, h  # both learn: the comparison means something
    ws, wc = (torch.load(tmp_path / e / "checkpoints" / "last.pt", weights_only=True)["model"] for e in results)
    assert all(torch.equal(ws[k], wc[k]) for k in ws)  # the same weights, bit for bit (CPU)
    # the checkpoints are one format: each engine continues the other's run for one more epoch
    continued = {}
    for first, then in (("seglib", "catalyst"), ("catalyst", "seglib")):
        run = make_run(camvid, tmp_path / first, epochs=EPOCHS + 1)
        r = continued[then] = run.train(progress=False, engine=then)
        assert r.resumed_from == {"epoch": EPOCHS + 1, "batch": 0} and r.epochs_completed == EPOCHS + 1
        assert [h["epoch"] for h in r.history] == list(range(1, EPOCHS + 2))
        assert same_history(r.history[:EPOCHS], results[first].history)
        assert run.evaluate()["miou"] == pytest.approx(r.history[r.best["epoch"] - 1]["val_miou"], abs=1e-6)
    a, b = continued["seglib"].history[-1], continued["catalyst"].history[-1]
    assert (b["val_miou"], b["val_loss"]) == (a["val_miou"], a["val_loss"])
