"""Checkpoint cost: size and write time of ``last.pt`` / ``best.pt``, and the share of epoch time training waits.

1. Size and write time: the JetCar model (``unet_mobilenet_v2``, 22 classes) trains a few steps on small
   synthetic street scenes with the original's optimizer (``radam_lookahead``: RAdam + Lookahead) and with
   ``adamw``, so every optimizer buffer exists; then ``last.pt`` (the full checkpoint,
   :meth:`~seglib.train.state.TrainingState.state_dict`) and ``best.pt`` (weights, config, metrics:
   :meth:`~seglib.train.state.TrainingState.best_state_dict`) are written with
   :func:`seglib.train.checkpoint.atomic_save` (temporary file, fsync, rename), the four writes interleaved,
   medians of the repeats.
2. Blocked share: the JetCar notebook's run with its defaults (CamVid when present) trains a few epochs with
   a fast local folder and WORKDIR on a stand-in Drive throttled to ``--mbps`` MB/s (the
   ``SEGLIB_TEST_DRIVE_MBPS`` hook of :func:`seglib.train.checkpoint.mirror`). The training thread's time at
   each epoch end (checkpoint, TensorBoard, scheduler: wall time between consecutive ``on_epoch_end`` callbacks
   minus the epoch's recorded ``seconds``) and its time waiting for the copy to WORKDIR
   (``copier.blocked``) are divided by the epoch wall time; the first epoch (cache fill) and the last (whose
   save is waited for, so the files are complete when ``fit()`` returns) are left out.

Target: blocked share under 2 % of epoch wall time.

    python -m benchmarks.checkpoint [--quick] [--mbps 40] [--sizes 96 224] [--out benchmarks/results/checkpoint.json]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    arg_parser,
    data_source,
    emit,
    interleaved,
    median,
    notebook_config,
    notebook_params,
    print_machine,
    print_table,
    table,
    target,
    write_results,
)
from seglib.segmentation import SegmentationRun  # noqa: E402
from seglib.train.checkpoint import atomic_save  # noqa: E402

NAME = "checkpoint"


def trained(tmp: str, optimizer: str, steps: int):
    """A Trainer of the JetCar model (22 classes) with ``optimizer`` after ``steps`` steps on 64 px synthetic data."""
    cfg, _ = notebook_config(ENCODER_WEIGHTS=None, IMG_SIZE=64, EPOCHS=1, OPTIMIZER=optimizer, N_CLASSES=22,
                             RESIZE_SCHEDULE=None)
    cfg.batch_size, cfg.num_workers, cfg.resize_schedule = 2, 0, None
    run = SegmentationRun(cfg, "synthetic", workdir=tmp,
                          synthetic_kwargs={"n_train": 2 * steps, "n_val": 2, "n_test": 0, "size": 64})
    run.prepare(check=False)
    trainer = run.trainer(progress=False)
    trainer.fit()
    return trainer


def sizes_and_writes(repeats: int) -> list[dict]:
    """Rows ``{optimizer, file, mb, write_s}`` for last.pt and best.pt of both optimizers (interleaved writes)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {opt: trained(f"{tmp}/{opt}", opt, 6) for opt in ("radam_lookahead", "adamw")}
        out = Path(tmp) / "bench"
        fns = {}
        for opt, tr in trainers.items():
            fns[(opt, "last.pt")] = lambda tr=tr, opt=opt: atomic_save(tr.state_dict(), out / f"{opt}-last.pt",
                                                                        keep_previous=True)
            fns[(opt, "best.pt")] = lambda tr=tr, opt=opt: atomic_save(tr.best_state_dict(), out / f"{opt}-best.pt")
        times = interleaved(fns, repeats)
        rows = []
        for (opt, file), ts in times.items():
            tr = trainers[opt]
            opt_mb = sum(v.numel() * v.element_size() for s in tr.optimizer.state_dict()["state"].values()
                         for v in s.values() if torch.is_tensor(v)) / 1e6
            row = {"what": "file", "optimizer": opt, "file": file, "mb": (out / f"{opt}-{file}").stat().st_size / 1e6,
                   "optimizer_state_mb": opt_mb if file == "last.pt" else 0.0, "write_s": median(ts),
                   "repeats": len(ts)}
            emit(NAME, **row)
            rows.append(row)
    return rows


class EpochEnds:
    """Trainer callback: wall time of each ``on_epoch_end``, the epoch's recorded seconds, the copy's blocked time."""

    def __init__(self):
        self.ends: list[dict] = []

    def on_epoch_end(self, state, record):
        self.ends.append({"t": time.perf_counter(), "seconds": record["seconds"], "img_size": record["img_size"],
                          "copy_blocked": state.copier.blocked if state.copier is not None else 0.0})


def blocked_share(size: int | None, epochs: int, data: str, over: dict, quick: bool, mbps: float,
                  sync_write_s: dict) -> dict:
    """Training thread's epoch-end and copy-wait time over epoch wall time, epochs 2 .. ``epochs - 1`` of a
    mirrored run; ``sync_write_s`` {optimizer: seconds of last.pt + best.pt writes} gives the share a save in
    the training thread would take (the way seglib saved before)."""
    params = {"IMG_SIZE": size, "RESIZE_SCHEDULE": None} if size else {}
    cfg, p = notebook_config(ENCODER_WEIGHTS=None, EPOCHS=epochs, **over, **params)
    if size:
        cfg.resize_schedule = None
    if quick:
        cfg.batch_size = 4
    os.environ["SEGLIB_TEST_DRIVE_MBPS"] = str(mbps)
    with tempfile.TemporaryDirectory() as tmp:
        run = SegmentationRun(cfg, data, workdir=f"{tmp}/drive", local=f"{tmp}/local",
                              synthetic_kwargs={"n_train": 16, "n_val": 8, "n_test": 0, "size": 96} if quick else None)
        run.prepare(check=False)
        ends = EpochEnds()
        trainer = run.trainer(progress=False, callbacks=[ends])
        trainer.fit()
        ck = run.ws.local / "checkpoints"
        last_mb = (ck / "last.pt").stat().st_size / 1e6
    e = ends.ends[:-1]  # the run's last save is waited for (files complete when fit() returns): not steady state
    walls = [b["t"] - a["t"] for a, b in zip(e, e[1:])]
    save = [w - b["seconds"] for w, b in zip(walls, e[1:])]
    copy = [b["copy_blocked"] - a["copy_blocked"] for a, b in zip(e, e[1:])]
    wall = sum(walls)
    row = {"what": "share", "img_size": e[-1]["img_size"], "batch": cfg.batch_size, "mbps": mbps,
           "epochs_timed": len(walls), "optimizer": cfg.optimizer, "last_pt_mb": last_mb,
           "epoch_wall_s": median(walls), "epoch_end_s": median(save), "copy_wait_s": median(copy),
           "blocked_share": (sum(save) + sum(copy)) / wall, "checkpoint_minutes": p["CHECKPOINT_MINUTES"]}
    if cfg.optimizer in sync_write_s:
        row["sync_write_s"] = sync_write_s[cfg.optimizer]
        row["share_if_synchronous"] = (sum(save) + len(save) * row["sync_write_s"]) / (wall + len(save) * row["sync_write_s"])
    emit(NAME, **row)
    return row


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--repeats", type=int, default=None, help="timed writes per file (default 3, quick 2)")
    p.add_argument("--mbps", type=float, default=40.0, help="stand-in Drive write speed [MB/s]")
    p.add_argument("--sizes", type=int, nargs="*", default=None,
                   help="image sizes of the blocked-share runs (default: the notebook's, and 96 px)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per blocked-share run, >= 3 (default 3: one timed)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    if a.threads:
        torch.set_num_threads(a.threads)
    print_machine()
    files = sizes_and_writes(a.repeats or (2 if a.quick else 3))
    data, over = data_source(a.quick)
    default_size = notebook_params()["IMG_SIZE"]
    sizes = a.sizes if a.sizes is not None else ([64] if a.quick else [None, 96])
    epochs = a.epochs or 3
    sync = {}
    for r in files:
        sync[r["optimizer"]] = sync.get(r["optimizer"], 0.0) + r["write_s"]
    shares = [blocked_share(s, epochs, data, over, a.quick, a.mbps, sync) for s in sizes]
    fcols = ["optimizer", "file", "mb", "optimizer_state_mb", "write_s"]
    scols = ["img_size", "batch", "optimizer", "last_pt_mb", "epoch_wall_s", "epoch_end_s", "copy_wait_s",
             "blocked_share", "sync_write_s", "share_if_synchronous"]
    print_table(files, fcols)
    print_table(shares, scols)
    targets = [target(f"training thread blocked on checkpoint + copy, {r['img_size']} px"
                      + (" (notebook default)" if r["img_size"] == default_size else ""),
                      round(r["blocked_share"], 4), "< 0.02", r["blocked_share"] < 0.02,
                      f"{r['epoch_end_s']:.2f} s at each epoch end (last.pt {r['last_pt_mb']:.0f} MB) against a "
                      f"{r['epoch_wall_s']:.1f} s epoch") for r in shares]
    md = "\n".join([
        "### Checkpoint size, write time and blocked share (`benchmarks/checkpoint.py`)",
        "",
        "The JetCar model (22 classes) after a few training steps with each optimizer; `last.pt` (full state) and "
        "`best.pt` (weights, config, metrics) written with `atomic_save` (temporary file, fsync, rename), "
        "interleaved, medians.",
        "",
        table(files, fcols, markdown=True),
        "",
        f"Blocked share: the notebook's defaults on `{Path(data).name}`, local folder plus a stand-in Drive "
        f"throttled to {a.mbps:g} MB/s; the training thread's time at each epoch end (checkpoint, TensorBoard, "
        "scheduler: wall time between `on_epoch_end` callbacks minus the epoch's recorded seconds) plus its wait "
        "for the copy (`copier.blocked`), over epoch wall time; the first epoch (cache fill) and the last (its save is "
        "waited for) left out. `share_if_synchronous`: the same with the measured `last.pt` + `best.pt` write time "
        "added in the training thread, as seglib saved before the background write.",
        "",
        table(shares, scols, markdown=True),
    ])
    write_results(NAME, files + shares, targets, md, a.out, time.perf_counter() - t_start, {"quick": a.quick})
    return 0


if __name__ == "__main__":
    sys.exit(main())
