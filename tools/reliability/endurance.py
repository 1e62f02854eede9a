"""Endurance: many short epochs in one process; resident memory and open file handles must stay flat.

``python -m tools.reliability.endurance [--epochs 300] [--out endurance.json]`` trains the JetCar path
(:class:`seglib.segmentation.SegmentationRun`, the notebook's per-epoch table, a mirrored WORKDIR as on Colab,
TensorBoard scalars and a 2-image prediction grid every epoch, ``last.pt`` every epoch, ``best.pt`` on each
improvement) with a tiny U-Net (width divisor 32, 32 px, 4 train / 2 val images, one step per epoch), samples
the resident set size (psutil) and the number of open file descriptors (``/proc/self/fd``) at every epoch end
and fits a least-squares line to the samples after ``warmup`` epochs.

It fails (exit code 1) when the descriptors grow (slope above :data:`FD_SLOPE` per epoch, or more open in the
last quarter of the samples than in the first, least counts compared: a copy in flight holds two for a moment)
or the memory grows faster than :data:`RSS_SLOPE_KB` per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

RSS_SLOPE_KB = 64.0
"""Largest accepted memory growth [KB/epoch]: 19 MB over 300 epochs. What legitimately grows is the history
(one record per epoch, kept in memory and in every checkpoint: about 1 KB/epoch); a leaked TensorBoard grid or
batch per epoch (>= 100 KB at these sizes, more at real ones) would exceed it."""
FD_SLOPE = 0.01
"""Largest accepted growth of open file descriptors [per epoch] (3 leaked over 300 epochs)."""


def slope(ys: list[float]) -> float:
    """Least-squares slope of ``ys`` against ``0, 1, 2, ...`` (units of ``ys`` per sample)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


class Sampler:
    """Trainer callback: ``(epoch, rss [KB], open fds, time [s])`` at every epoch end."""

    def __init__(self):
        import psutil

        self.proc, self.samples = psutil.Process(), []

    def on_epoch_end(self, state, record) -> None:
        self.samples.append((record["epoch"], self.proc.memory_info().rss / 1024, len(os.listdir("/proc/self/fd")),
                             time.monotonic()))


def endurance(folder: Path, epochs: int = 300, warmup: int = 30) -> dict:
    """Train ``epochs`` epochs in ``folder`` (``w/`` WORKDIR, ``local/``) and measure (see the module docstring).

    Returns:
        ``{"epochs", "warmup", "seconds" (of training), "rss_start_kb", "rss_end_kb" (first and last sample after
        the warm-up), "rss_slope_kb_per_epoch", "fds_start", "fds_end" (least count in the first and the last
        quarter of those samples), "fds_max", "fd_slope_per_epoch", limits, "passed", "problems"}``.
    """
    import torch

    from seglib.config import TrainConfig
    from seglib.segmentation import SegmentationRun

    torch.set_num_threads(1)
    cfg = TrainConfig(experiment="endurance", model="unet", model_kwargs={"width_divisor": 32}, n_classes=22,
                      img_size=32, batch_size=4, epochs=epochs, encoder_weights=None, num_workers=0,
                      checkpoint_minutes=1000, augment="street", seed=0, log_images=2, early_stop_patience=None)
    run = SegmentationRun(cfg, "synthetic", workdir=folder / "w", local=folder / "local", smoke=True, device="cpu",
                          synthetic_kwargs={"n_train": 4, "n_val": 2, "n_test": 1, "size": 32})
    run.prepare()
    sampler = Sampler()
    t0 = time.monotonic()
    run.train(callbacks=[sampler], progress=False)
    seconds = time.monotonic() - t0
    after = sampler.samples[warmup:] if len(sampler.samples) > warmup + 1 else sampler.samples
    rss, fds = [s[1] for s in after], [s[2] for s in after]
    q = max(1, len(fds) // 4)  # a copy to WORKDIR in flight holds 2 more for a moment: compare the minima
    out = {"epochs": len(sampler.samples), "warmup": warmup, "seconds": round(seconds, 1),
           "rss_start_kb": round(rss[0]), "rss_end_kb": round(rss[-1]), "rss_slope_kb_per_epoch": round(slope(rss), 2),
           "fds_start": min(fds[:q]), "fds_end": min(fds[-q:]), "fds_max": max(fds),
           "fd_slope_per_epoch": round(slope(fds), 4), "rss_limit_kb_per_epoch": RSS_SLOPE_KB,
           "fd_limit_per_epoch": FD_SLOPE}
    problems = []
    if out["epochs"] != epochs:
        problems.append(f"{out['epochs']} epochs trained, not {epochs}")
    if slope(fds) > FD_SLOPE or out["fds_end"] > out["fds_start"]:
        problems.append(f"open file descriptors grow: {out['fds_start']} -> {out['fds_end']} (least in the first "
                        f"and last quarter), slope {slope(fds):.4f}/epoch")
    if slope(rss) > RSS_SLOPE_KB:
        problems.append(f"memory grows {slope(rss):.1f} KB/epoch (limit {RSS_SLOPE_KB})")
    return {**out, "passed": not problems, "problems": problems}


def main(argv=None) -> int:
    """CLI: run :func:`endurance`, print and write the result as JSON; exit code 1 when it failed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--folder", help="work folder (default: a temporary one)")
    p.add_argument("--out", help="write the result here as JSON")
    a = p.parse_args(argv)
    folder = Path(a.folder or tempfile.mkdtemp(prefix="seglib-endurance-"))
    log = open(folder / "output.txt", "w") if folder.mkdir(parents=True, exist_ok=True) is None else None
    real = sys.stdout
    sys.stdout = log  # the per-epoch table goes to the log
    try:
        res = endurance(folder, a.epochs, min(a.warmup, max(1, a.epochs // 3)))
    finally:
        sys.stdout = real
        log.close()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
