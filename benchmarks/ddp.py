"""Data-parallel training on the CPU: training images/s of the JetCar model in 1 process (all cores as torch threads)
vs N gloo processes (``DEVICES=N``, the cores shared out as threads), the same effective batch.

The JetCar notebook's configuration (``unet_mobilenet_v2``, 22 classes, ``encoder_weights=None``, no resize schedule,
its recipe's optimizer, loss and LR) trains ``--epochs`` epochs at ``--size`` px (128) on ``--images`` synthetic street
scenes (64; 8 validation images), effective batch ``--batch`` (8), through ``SegmentationRun.train(devices=...)``, the
notebook's call: 1 process, then N processes started from this one (``fork``), alternating for ``--repeats`` rounds,
each run in a new WORKDIR. Speed = images / ``train_seconds`` of the last epoch (the first warms up; validation and
the process start are left out and reported separately as the run's wall time), median over the rounds; speed-up = N
processes / 1 process. The two runs' final weights are compared too: the JetCar model has BatchNorm, whose batch
statistics are per process on a CPU (SyncBatchNorm is CUDA-only), so they differ by more than summation order.

No speed target is set by the issue; docs/scaling.md quotes these figures.

    python -m benchmarks.ddp [--quick] [--processes 2] [--size 128] [--images 64] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seglib  # noqa: E402,F401,I001  (first: it repairs torchvision on CPU-only machines)
import torch  # noqa: E402

from benchmarks.common import arg_parser, emit, median, notebook_config, print_machine, print_table, table, \
    write_results  # noqa: E402
from seglib.segmentation import SegmentationRun  # noqa: E402

NAME = "ddp"


def train_once(root: Path, devices: int, threads: int, size: int, images: int, epochs: int, batch: int) -> dict:
    """One run in a new WORKDIR under ``root`` (one process: with ``threads`` torch threads):
    ``{devices, threads, train_s, images_per_s, wall_s, weights}``."""
    cfg, _ = notebook_config(ENCODER_WEIGHTS=None, IMG_SIZE=size, EPOCHS=epochs, RESIZE_SCHEDULE=None, N_CLASSES=22,
                             EXPERIMENT=f"bench_ddp_{devices}", BATCH_SIZE=batch, LR=1e-3)
    cfg.num_workers, cfg.resize_schedule = 0, None
    folder = Path(tempfile.mkdtemp(dir=root))
    run = SegmentationRun(cfg, "synthetic", workdir=folder / "work", local=folder / "local", device="cpu",
                          synthetic_kwargs={"n_train": images, "n_val": 8, "n_test": 0, "size": size})
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the measurements only
        run.prepare(check=False)
        before = torch.get_num_threads()
        torch.set_num_threads(threads if devices == 1 else before)
        try:
            t0 = time.perf_counter()
            result = run.train(progress=False, epoch_table=False, devices=devices)
            wall = time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)
    last = result.history[-1]
    weights = torch.load(folder / "local" / "checkpoints" / "last.pt", weights_only=True)["model"]
    params = {k for k, _ in run.build_model(pretrained=False).named_parameters()}
    return {"devices": devices, "threads": threads if devices == 1 else max(1, (os.cpu_count() or 1) // devices),
            "train_s": last["train_seconds"], "images_per_s": images / last["train_seconds"],
            "wall_s": wall, "weights": {k: v for k, v in weights.items() if k in params}}


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--processes", type=int, default=2, help="data-parallel processes compared with 1")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", type=int, default=64, help="training images (steps per epoch = images / batch)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="effective (global) batch")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    if a.quick:
        a.size, a.images, a.epochs, a.repeats = 64, 16, 2, 1
    t_start, load = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    m = print_machine()
    n_threads = m["torch_threads"]
    variants = [(1, n_threads)] + ([(1, 1)] if n_threads > 1 else []) + [(a.processes, 1)]
    runs: dict[tuple, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="seglib-bench-ddp-") as tmp:
        for _ in range(a.repeats):
            for n, t in variants:  # interleaved: 1 process, 1 process 1 thread, N processes, 1 process, ...
                r = train_once(Path(tmp), n, t, a.size, a.images, a.epochs, a.batch)
                emit(NAME, **{k: v for k, v in r.items() if k != "weights"})
                runs[(n, t)].append(r)
    one, many = runs[variants[0]][-1]["weights"], runs[variants[-1]][-1]["weights"]
    diff = max((one[k].double() - many[k].double()).abs().max().item() for k in one)
    scale = max(one[k].abs().max().item() for k in one)
    rows = []
    for (n, _), rs in runs.items():
        ips = median(r["images_per_s"] for r in rs)
        rows.append({"processes": n, "threads_each": rs[0]["threads"],
                     "batch_each": a.batch // n, "px": a.size, "repeats": len(rs),
                     "train_s": round(median(r["train_s"] for r in rs), 2), "images_per_s": round(ips, 2),
                     "wall_s": round(median(r["wall_s"] for r in rs), 1)})
    for r in rows:
        r["speedup"] = round(r["images_per_s"] / rows[0]["images_per_s"], 3)
    cols = ["processes", "threads_each", "batch_each", "px", "repeats", "train_s", "images_per_s", "speedup", "wall_s"]
    print_table(rows, cols)
    print(f"# final weights, {a.processes} processes vs 1 (BatchNorm statistics per process): max |diff| {diff:.3g} "
          f"(largest |weight| {scale:.3g})")
    md = "\n".join([
        "### Data-parallel training on the CPU (`benchmarks/ddp.py`)",
        "",
        f"The JetCar notebook's model and recipe (`unet_mobilenet_v2`, 22 classes, no pretrained weights) trained "
        f"{a.epochs} epochs at {a.size} px on {a.images} synthetic street scenes, effective batch {a.batch}, by "
        f"`SegmentationRun.train(devices=N)`: 1 process with {n_threads} torch threads (and with 1) vs {a.processes} "
        "gloo processes started from the caller (fork), the cores shared out as threads; interleaved rounds, medians. "
        "images/s = training images / the last epoch's training seconds (the first epoch warms up); wall = the whole "
        f"`train()` call (process start, {a.epochs} epochs, validation on every process). Load average at the start: "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}. No target is set by the issue.",
        "",
        table(rows, cols, markdown=True),
        "",
        f"Final parameters of the last round, {a.processes} processes vs 1: max |difference| {diff:.3g}, largest "
        f"|parameter| {scale:.3g} (the model's "
        "BatchNorm normalises each process's half batch: SyncBatchNorm, which would make it the whole batch, is "
        "CUDA-only; `tests/test_ddp.py` checks a model without BatchNorm to 1e-4).",
    ])
    write_results(NAME, rows, [], md, a.out, time.perf_counter() - t_start, {"weights_max_abs_diff": diff, "weights_max_abs": scale})
    return 0


if __name__ == "__main__":
    sys.exit(main())
