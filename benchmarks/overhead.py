"""Trainer overhead: seconds per training step of seglib's ``Trainer`` against a bare loop, and progressive resizing.

1. Per step, at 96 and 160 px: the JetCar notebook's run (its defaults: loss, optimizer, batch, augmentation,
   ``checkpoint_minutes``, ``log_images``, the decoded-image cache; ``encoder_weights=None``) trains through
   ``SegmentationRun.trainer().fit()`` with checkpoints and TensorBoard on, and after every Trainer epoch a
   callback runs one epoch of a minimal hand-written loop: the same architecture, training dataset (same
   images, augmentation and cache), batch size, worker count, threads, loss and optimizer, in a plain
   ``DataLoader`` and a ``for`` loop (forward, loss, ``zero_grad``, ``backward``, ``step``), started once the
   Trainer's background checkpoint write is done (its cost is ``benchmarks/checkpoint.py``'s). The Trainer's
   time is its epochs' ``train_seconds`` (history.json; the training loop only), the loop's the wall time of
   its epoch; both include data loading. The first epoch of each is a warm-up (cache fill, allocator); then
   Trainer and loop epochs alternate and the medians are compared: the ratio, and seglib's own code per
   epoch (median of Trainer minus loop epoch time) [ms].
2. Progressive resizing: one Trainer run whose resize schedule alternates 96 and 224 px every epoch; an
   epoch's end-to-end wall time (loading, training, validation at that size, TensorBoard, checkpoint) is the
   time between consecutive ``on_epoch_end`` callbacks; the first 96 and 224 px epochs are warm-ups.

Data: the CamVid subset when present (``/work/shared/data/camvid_segnet``, ``$SEGLIB_CAMVID``), else the
notebook's synthetic street scenes. Targets: Trainer / loop <= 1.03; 224 px epoch / 96 px epoch >= 5.

    python -m benchmarks.overhead [--quick] [--repeats 3] [--threads N] [--out benchmarks/results/overhead.json]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    arg_parser,
    data_source,
    emit,
    median,
    notebook_config,
    print_machine,
    print_table,
    table,
    target,
    write_results,
)
from seglib.segmentation import SegmentationRun  # noqa: E402
from seglib.train.optim import build_optimizer  # noqa: E402

NAME = "overhead"
QUICK_SYNTHETIC = {"n_train": 16, "n_val": 8, "n_test": 0, "size": 96}


def make_run(tmp: str, data: str, over: dict, quick: bool, **params) -> SegmentationRun:
    """The notebook's run (its defaults with ``params``), prepared without the data check, in ``tmp``."""
    cfg, _ = notebook_config(ENCODER_WEIGHTS=None, **over, **params)
    cfg.resize_schedule = params.get("RESIZE_SCHEDULE")  # None: one size (the recipe's schedule left out)
    if quick:
        cfg.batch_size = 4
    run = SegmentationRun(cfg, data, workdir=tmp, synthetic_kwargs=QUICK_SYNTHETIC if quick else None)
    run.prepare(check=False)
    return run


class BareLoop:
    """The minimal hand-written training loop: ``epoch()`` trains one epoch and returns its wall time [s]."""

    def __init__(self, run: SegmentationRun, dataset, num_workers: int):
        cfg = run.cfg
        self.model = run.build_model(pretrained=False)
        self.loss_fn = run.loss()
        self.optimizer = build_optimizer(cfg.optimizer, self.model, cfg.lr, cfg.weight_decay, cfg.encoder_lr_ratio,
                                         cfg.encoder_weight_decay, **cfg.optimizer_kwargs)
        self.loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=num_workers,
                                 persistent_workers=num_workers > 0)

    def epoch(self) -> float:
        t0 = time.perf_counter()
        self.model.train()
        for batch in self.loader:
            loss = self.loss_fn(self.model(batch["input"]), batch["target"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - t0


class Alternate:
    """Trainer callback: after every Trainer epoch, record its ``train_seconds`` and run one bare-loop epoch."""

    def __init__(self):
        self.bare: BareLoop | None = None
        self.trainer_s: list[float] = []
        self.bare_s: list[float] = []

    def on_epoch_end(self, state, record):
        self.trainer_s.append(record["train_seconds"])
        for t in threading.enumerate():  # the epoch's checkpoint, written in the background: done before the
            if t.name == "seglib-checkpoint-write":  # loop's epoch, so neither side trains beside the write
                t.join()
        self.bare_s.append(self.bare.epoch())


def per_step(size: int, repeats: int, data: str, over: dict, quick: bool) -> dict:
    """Trainer against the bare loop at ``size`` px: medians per step [s], ratio, code per epoch [ms]."""
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(tmp, data, over, quick, IMG_SIZE=size, EPOCHS=repeats + 1)
        alt = Alternate()
        trainer = run.trainer(progress=False, callbacks=[alt])
        alt.bare = BareLoop(run, trainer.train_loader.dataset, trainer.train_loader.num_workers)
        trainer.fit()
        n = trainer.n_batches
        tr, bare = alt.trainer_s[1:], alt.bare_s[1:]
        row = {"what": "per_step", "img_size": size, "batch": run.cfg.batch_size, "steps_per_epoch": n,
               "repeats": len(tr), "workers": trainer.train_loader.num_workers,
               "trainer_s_per_step": median(tr) / n, "loop_s_per_step": median(bare) / n,
               "ratio": median(tr) / median(bare),
               "code_ms_per_epoch": 1000 * median([a - b for a, b in zip(tr, bare)]),
               "trainer_epochs_s": [round(x, 3) for x in alt.trainer_s],
               "loop_epochs_s": [round(x, 3) for x in alt.bare_s],
               "loss": run.cfg.loss, "optimizer": run.cfg.optimizer, "cache": getattr(run.cfg, "cache", None)}
    emit(NAME, **row)
    return row


class EpochClock:
    """Trainer callback: the wall-clock time of every ``on_epoch_end`` and the epoch's image size."""

    def __init__(self):
        self.ends: list[tuple[int, float]] = []

    def on_epoch_end(self, state, record):
        self.ends.append((record["img_size"], time.perf_counter()))


def progressive(small: int, large: int, repeats: int, data: str, over: dict, quick: bool) -> dict:
    """End-to-end epoch wall time at ``small`` and ``large`` px, alternating in one run (first of each: warm-up)."""
    epochs = 2 * (repeats + 1)
    schedule = {e: small if e % 2 else large for e in range(1, epochs + 1)}
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(tmp, data, over, quick, IMG_SIZE=large, EPOCHS=epochs, RESIZE_SCHEDULE=schedule)
        clock = EpochClock()
        trainer = run.trainer(progress=False, callbacks=[clock])
        t0 = time.perf_counter()
        trainer.fit()
    starts = [t0] + [t for _, t in clock.ends[:-1]]
    walls = {small: [], large: []}
    for (size, end), start in zip(clock.ends, starts):
        walls[size].append(end - start)
    s, lg = walls[small][1:], walls[large][1:]
    row = {"what": "progressive", "small_px": small, "large_px": large, "repeats": len(s),
           "small_epoch_s": median(s), "large_epoch_s": median(lg), "ratio": median(lg) / median(s),
           "small_epochs_s": [round(x, 3) for x in walls[small]], "large_epochs_s": [round(x, 3) for x in walls[large]]}
    emit(NAME, **row)
    return row


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per variant (default 2, quick 2)")
    p.add_argument("--sizes", type=int, nargs="+", default=[96, 160], help="per-step image sizes [px]")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    repeats = a.repeats or 2
    machine = print_machine()
    data, over = data_source(a.quick)
    sizes = [64] if a.quick else a.sizes
    steps = [per_step(s, repeats, data, over, a.quick) for s in sizes]
    prog = progressive(64, 128, 1, data, over, True) if a.quick else progressive(96, 224, 1, data, over, False)
    cols = ["img_size", "batch", "steps_per_epoch", "repeats", "trainer_s_per_step", "loop_s_per_step", "ratio",
            "code_ms_per_epoch"]
    print_table(steps, cols)
    pcols = ["small_px", "large_px", "repeats", "small_epoch_s", "large_epoch_s", "ratio"]
    print_table([prog], pcols)
    worst = max(steps, key=lambda r: r["ratio"])
    targets = [target(f"Trainer / bare loop per step, {r['img_size']} px", round(r["ratio"], 3), "<= 1.03",
                      r["ratio"] <= 1.03, f"Trainer epochs took {r['code_ms_per_epoch']:.0f} ms more than the "
                      f"loop's (median of {r['repeats']}); see the epoch times in the rows") for r in steps]
    targets.append(target(f"{prog['large_px']} px epoch / {prog['small_px']} px epoch, end to end",
                          round(prog["ratio"], 2), ">= 5", prog["ratio"] >= 5,
                          f"a {prog['small_px']} px epoch still takes {prog['small_epoch_s']:.1f} s: fixed costs "
                          "(loading, validation, checkpoint) do not shrink with the image"))
    md = "\n".join([
        "### Trainer overhead and progressive resizing (`benchmarks/overhead.py`)",
        "",
        f"The JetCar notebook's defaults (loss `{steps[0]['loss']}`, optimizer `{steps[0]['optimizer']}`, batch "
        f"{steps[0]['batch']}, cache `{steps[0]['cache']}`, checkpoints and TensorBoard on, random init) train through "
        "`SegmentationRun.trainer().fit()`; after every Trainer epoch (and its background checkpoint write) a callback "
        "trains one epoch of a minimal hand-written loop (same architecture, dataset, batch, workers, threads, loss and optimizer; plain "
        "`DataLoader` and `for` loop). Trainer time is history's `train_seconds`; both include data loading. "
        f"First epoch of each discarded, then medians of {worst['repeats']} alternating epochs. Data: "
        f"`{Path(data).name}`.",
        "",
        table(steps, cols, markdown=True),
        "",
        "Progressive resizing: one Trainer run alternating the image size every epoch; end-to-end epoch wall "
        "time (loading, training, validation, TensorBoard, checkpoint) between `on_epoch_end` callbacks, first "
        "epoch of each size discarded.",
        "",
        table([prog], pcols, markdown=True),
    ])
    write_results(NAME, steps + [prog], targets, md, a.out, time.perf_counter() - t_start,
                  {"quick": a.quick, "data": data, "machine_at_start": machine})
    return 0


if __name__ == "__main__":
    sys.exit(main())
