"""ONNX deployment: images/s of the JetCar model in onnxruntime (CPU) and in PyTorch (CPU) at 224 px, and what
the export costs.

1. A real seglib checkpoint: the JetCar notebook's configuration (``unet_mobilenet_v2``, 22 classes,
   ``encoder_weights=None``, no resize schedule) trains 1 epoch at ``--size`` px (224) on 16 synthetic street
   scenes of that size (8 validation images) with a throw-away WORKDIR, so ``WORKDIR/checkpoints/best.pt`` is
   what a user's run writes. The weights are barely trained: speed does not depend on them.
2. Export: ``seglib.export_onnx(WORKDIR, model.onnx, images=<the 8 validation images>)`` (float32, dynamic
   batch, opset 18), timed once; its report gives the file size and the check against PyTorch (argmax agreement,
   largest logit difference).
3. Forward speed: ``seglib.load_run(WORKDIR, device="cpu")`` gives the model (eval) and ``preprocess``; a batch
   of 1 and of 8 preprocessed images (``float32 N x 3 x S x S``) runs through ``run.model`` under
   ``torch.inference_mode()`` and through onnxruntime's ``CPUExecutionProvider`` on the exported graph, once with
   default session options (``intra_op_num_threads=0``: onnxruntime picks one thread per physical core) and once
   with ``intra_op_num_threads = torch.get_num_threads()`` (the threads PyTorch uses); then, when PyTorch uses
   more than one thread, both with 1 thread (a crowded machine slows multi-threaded PyTorch most). The variants
   of a batch size run interleaved (one warm-up call each, then up to ``--repeats`` rounds, cut to fit
   ``--seconds`` but never below 3), medians reported; images/s = batch / median seconds per forward; the ratio
   is onnxruntime / PyTorch images/s at the same PyTorch thread count.
4. Context: ``run.predict(folder)`` of 16 JPEG images of ``--size`` px end to end (decode, resize, normalise,
   forward in batches of 8, logits resized back, argmax), PyTorch only, median of the repeats.

No speed target is set by the issue; the one target is the exporter's own acceptance gate (argmax agreement of
onnxruntime and PyTorch >= 99.9 % of the validation pixels).

    python -m benchmarks.onnx [--quick] [--size 224] [--repeats 9] [--seconds 40] [--out benchmarks/results/onnx.json]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import seglib  # noqa: E402,I001  (first: it repairs torchvision on CPU-only machines)
import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    arg_parser,
    emit,
    interleaved,
    median,
    notebook_config,
    print_machine,
    print_table,
    table,
    target,
    write_results,
)
from seglib.deploy.onnx_export import MIN_AGREEMENT  # noqa: E402
from seglib.segmentation import SegmentationRun  # noqa: E402

NAME = "onnx"
N_PREDICT = 16
"""Images of the end-to-end ``predict(folder)`` measurement."""


def trained_workdir(root: Path, size: int, n_train: int = N_PREDICT) -> tuple[Path, list[Path], list[Path]]:
    """Train the JetCar model 1 epoch at ``size`` px on ``n_train`` synthetic street scenes of ``size`` px (8
    validation scenes) under ``root``.

    Returns:
        ``(WORKDIR, validation image paths, training image paths)``; ``WORKDIR/checkpoints/best.pt`` exists.
    """
    cfg, _ = notebook_config(ENCODER_WEIGHTS=None, IMG_SIZE=size, EPOCHS=1, RESIZE_SCHEDULE=None, N_CLASSES=22,
                             EXPERIMENT="bench_onnx")
    cfg.batch_size, cfg.num_workers, cfg.resize_schedule = 4, 0, None
    run = SegmentationRun(cfg, "synthetic", workdir=root / "work", local=root / "local", device="cpu",
                          synthetic_kwargs={"n_train": n_train, "n_val": 8, "n_test": 0, "size": size})
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the measurements only
        run.prepare(check=False)
        run.train(progress=False, epoch_table=False)
    best = run.ws.workdir / "checkpoints" / "best.pt"
    if not best.is_file():
        raise RuntimeError(f"training wrote no {best}; the benchmark needs a checkpoint to load and export")
    return run.ws.workdir, [s.image for s in run.splits["val"]], [s.image for s in run.splits["train"]]


def export(workdir: Path, path: Path, images: list[Path]) -> dict:
    """``seglib.export_onnx`` of ``workdir`` to ``path`` (checked on ``images``), timed; the report's figures."""
    t0 = time.perf_counter()
    report = seglib.export_onnx(workdir, path, images=images)
    wall = time.perf_counter() - t0
    row = {"what": "export", "px": report.img_size, "export_s": round(report.export_seconds, 2),
           "check_s": round(report.check_seconds, 2), "total_s": round(wall, 2), "size_mb": round(report.size_mb, 2),
           "n_images": report.n_images, "agreement": report.agreement, "agreement_decided": report.agreement_decided,
           "max_abs_diff": max(report.max_abs_diff.values()), "atol": report.atol}
    emit(NAME, **row)
    return row


def sessions(path: Path, threads: list[int]) -> dict:
    """onnxruntime CPU sessions of ``path``: ``{0: default session options, t: intra_op_num_threads=t, ...}``."""
    import onnxruntime as ort

    out = {0: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])}
    for t in threads:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = t
        out[t] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return out


def timed(fns: dict, repeats: int, seconds: float) -> tuple[dict[str, list[float]], int]:
    """:func:`~benchmarks.common.interleaved` after one timed warm-up call of each variant, with the repeats cut
    (to no fewer than 3) so the rounds fit in about ``seconds`` on a slow or crowded machine; ``(times, repeats)``."""
    warm = 0.0
    for fn in fns.values():
        t0 = time.perf_counter()
        fn()
        warm += time.perf_counter() - t0
    repeats = max(3, min(repeats, int(seconds / max(warm, 1e-9))))
    return interleaved(fns, repeats, warmup=False), repeats


def forward_rows(loaded, onnx_path: Path, images: list[Path], batches: list[int], repeats: int,
                 seconds: float) -> list[dict]:
    """Rows ``{runtime, threads, batch, px, repeats, median_s, images_per_s, ratio}`` of the interleaved forwards:
    per batch size, PyTorch with its threads (``torch.get_num_threads()``, N) next to onnxruntime with default
    options and with N intra-op threads; then (N > 1) both with 1 thread, which a crowded machine slows less.
    ``ratio`` = PyTorch's median seconds at the same thread count / this row's (onnxruntime speed-up)."""
    n = torch.get_num_threads()
    groups = [n] + ([1] if n > 1 else [])
    sess = sessions(onnx_path, groups)
    (inp,), (out,) = sess[0].get_inputs(), sess[0].get_outputs()
    rows = []
    try:
        for threads in groups:
            torch.set_num_threads(threads)
            for batch in batches:
                x = torch.cat([loaded.preprocess(images[k % len(images)]) for k in range(batch)])
                xn = x.numpy()

                def pytorch(x=x):
                    with torch.inference_mode():
                        return loaded.model(x)

                fns = {("pytorch", threads): pytorch}
                for t in ([0] if threads == n else []) + [threads]:
                    fns[("onnxruntime", t)] = lambda s=sess[t], xn=xn: s.run([out.name], {inp.name: xn})
                times, done = timed(fns, repeats, seconds / (len(groups) * len(batches)))
                torch_s = median(times[("pytorch", threads)])
                for (runtime, t), ts in times.items():
                    s = median(ts)
                    row = {"runtime": runtime, "threads": "default" if t == 0 else t, "batch": batch,
                           "px": loaded.img_size, "repeats": done, "median_s": round(s, 4),
                           "images_per_s": round(batch / s, 2), "ratio": round(torch_s / s, 3)}
                    emit(NAME, **row)
                    rows.append(row)
    finally:
        torch.set_num_threads(n)
    return rows


def predict_row(loaded, images: list[Path], tmp: Path, repeats: int) -> dict:
    """``loaded.predict(folder)`` of ``images`` copied into a folder, end to end: ``{... images_per_s}``."""
    folder = tmp / "predict"
    folder.mkdir()
    for p in images:
        shutil.copy(p, folder / p.name)
    n = len(images)
    with contextlib.redirect_stdout(sys.stderr):
        times = interleaved({"predict": lambda: loaded.predict(folder, batch_size=8, progress=False)}, repeats)
    s = median(times["predict"])
    row = {"runtime": "pytorch", "threads": torch.get_num_threads(), "batch": f"predict({n} files)",
           "px": loaded.img_size, "repeats": repeats, "median_s": round(s, 4), "images_per_s": round(n / s, 2),
           "ratio": None}
    emit(NAME, **row)
    return row


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--size", type=int, default=224, help="image and network input side [px] (the issue's: 224)")
    p.add_argument("--repeats", type=int, default=None, help="timed forwards per variant (default 9, quick 3)")
    p.add_argument("--seconds", type=float, default=None,
                   help="time for all forward rounds [s] (default 40, quick 8); repeats are cut to fit, never below 3")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    print_machine()
    size, n_files = (64, 8) if a.quick else (a.size, N_PREDICT)
    repeats, seconds = (a.repeats or 3, a.seconds or 8.0) if a.quick else (a.repeats or 9, a.seconds or 40.0)
    with tempfile.TemporaryDirectory(prefix="seglib-bench-onnx-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        workdir, val_images, train_images = trained_workdir(tmp, size, n_files)
        train_s = time.perf_counter() - t0
        exp = export(workdir, tmp / "model.onnx", val_images)
        loaded = seglib.load_run(workdir, device="cpu")
        if loaded.img_size != size:
            raise RuntimeError(f"the checkpoint loads at {loaded.img_size} px, not the {size} px benchmarked")
        rows = forward_rows(loaded, tmp / "model.onnx", val_images, [1, 8], repeats, seconds)
        rows.append(predict_row(loaded, train_images[:n_files], tmp, 3))
    n = torch.get_num_threads()
    cols = ["runtime", "threads", "batch", "px", "repeats", "median_s", "images_per_s", "ratio"]
    ecols = ["px", "export_s", "check_s", "total_s", "size_mb", "n_images", "agreement", "agreement_decided",
             "max_abs_diff", "atol"]
    print_table(rows, cols)
    print_table([exp], ecols)
    ratio_text = "; ".join(f"batch {r['batch']}, threads={r['threads']}: {r['ratio']:.2f}" for r in rows
                           if r["runtime"] == "onnxruntime")
    print(f"# onnxruntime / PyTorch images/s: {ratio_text}", flush=True)
    targets = [target(f"onnxruntime vs PyTorch argmax agreement at {exp['px']} px (export check)", exp["agreement"],
                      f">= {MIN_AGREEMENT}", exp["agreement"] >= MIN_AGREEMENT,
                      f"{exp['agreement']:.5f} of {exp['n_images']} images' pixels agree, max |logit difference| "
                      f"{exp['max_abs_diff']:.2e}")]
    md = "\n".join([
        "### ONNX: onnxruntime vs PyTorch on CPU (`benchmarks/onnx.py`)",
        "",
        f"The JetCar model (`unet_mobilenet_v2`, 22 classes) trained 1 epoch at {size} px on synthetic streets (a real "
        "`best.pt`; the weights are barely trained, which speed does not depend on), exported with "
        "`seglib.export_onnx` (float32, dynamic batch, opset 18) and loaded with "
        "`seglib.load_run(WORKDIR, device=\"cpu\")`. Forward: `run.model` under `torch.inference_mode()` vs "
        "onnxruntime's `CPUExecutionProvider` on the exported graph, on a preprocessed "
        f"`float32 N x 3 x {size} x {size}` batch of validation images. PyTorch with its {n} threads "
        f"(`torch.get_num_threads()`) runs next to onnxruntime with default session options (`threads` = default: "
        f"`intra_op_num_threads=0`, one thread per physical core) and with `intra_op_num_threads={n}`"
        + ("; then both with 1 thread (`torch.set_num_threads(1)`, `intra_op_num_threads=1`)" if n > 1 else "")
        + ". The variants of a row group run interleaved (one warm-up each, then the rounds), medians; images/s = "
        "batch / median s; ratio = onnxruntime images/s / PyTorch images/s at the same PyTorch thread count (no "
        f"target is set by the issue). Context: `run.predict(folder)` of {n_files} JPEG files of {size} px end to "
        "end (decode, resize, forward in batches of 8, logits resized back, argmax), PyTorch with "
        f"{n} threads. Load average at the start: {load_start[0]:.1f} / {load_start[1]:.1f} / {load_start[2]:.1f} "
        f"on {os.cpu_count()} cores (a crowded machine slows PyTorch's {n}-thread OpenMP regions most).",
        "",
        table(rows, cols, markdown=True),
        "",
        f"Onnxruntime / PyTorch images/s: {ratio_text}.",
        "",
        f"Export (once; the model trained {train_s:.0f} s before it): `export_s` = `torch.onnx.export`, `check_s` = "
        "onnxruntime vs PyTorch on the validation images, `total_s` = the whole `export_onnx` call, `size_mb` = the "
        "file; agreement = share of pixels with the same argmax (`agreement_decided`: among the pixels whose top two "
        "logits differ by more than `atol`); `max_abs_diff` = largest logit difference.",
        "",
        table([exp], ecols, markdown=True),
    ])
    write_results(NAME, rows, targets, md, a.out, time.perf_counter() - t_start,
                  {"quick": a.quick, "export": exp, "train_seconds": round(train_s, 2), "load_avg_start": load_start})
    return 0


if __name__ == "__main__":
    sys.exit(main())
