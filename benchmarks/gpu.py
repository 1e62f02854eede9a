"""GPU throughput of the JetCar U-Net (smp U-Net + MobileNetV2, 22 classes) at 224 px: what ``benchmarks/gpu.sh`` runs.

On a machine with a CUDA GPU it measures, side by side in one process (round-robin repeats, medians):

* training images/s (forward, loss, backward, AdamW step; batch ``--batch``) in fp32, AMP fp16 (GradScaler) and
  AMP bf16, each with and without ``channels_last``, and with ``torch.compile`` for the best of them
  (``--compile``; its compile seconds reported);
* peak GPU memory of each variant (``torch.cuda.max_memory_allocated``);
* the largest batch that fits (doubling until out of memory, then bisecting) for the fastest variant;
* the GPU busy share while seglib's real training loader (decode or cache, augmentation, collate, ``pin_memory``)
  feeds it: the step time with preloaded tensors divided by the step time with the loader, for the default
  number of workers and for 2 workers (Colab's 2 vCPUs).

Without a GPU it prints that no GPU was found and exits 0. Results: ``benchmarks/results/gpu.json``.

    python -m benchmarks.gpu [--batch 64] [--data synthetic|<folder>] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, print_table, target, write_results  # noqa: E402


def _steps(model, opt, scaler, x, y, dtype, n: int) -> float:
    """Seconds per training step over ``n`` steps (CUDA-synchronised)."""
    import torch

    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / n


def _model(classes: int, channels_last: bool):
    import torch

    from seglib.models import build_model

    m = build_model("unet_mobilenet_v2", classes=classes, encoder_weights=None).cuda()
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m, torch.optim.AdamW(m.parameters(), 1e-3)


def _batch(n: int, size: int, classes: int, channels_last: bool):
    import torch

    x = torch.randn(n, 3, size, size, device="cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, classes, (n, size, size), device="cuda")


def throughput(args) -> tuple[list[dict], dict]:
    """Images/s and peak memory of each precision x memory-format variant, round-robin repeats, medians."""
    import torch

    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    variants = {f"{d}{'+cl' if cl else ''}": (d, cl) for d in dtypes for cl in (False, True)}
    state, times = {}, {k: [] for k in variants}
    for name, (d, cl) in variants.items():
        model, opt = _model(args.classes, cl)
        scaler = torch.amp.GradScaler("cuda", enabled=d == "fp16")
        x, y = _batch(args.batch, args.size, args.classes, cl)
        torch.cuda.reset_peak_memory_stats()
        _steps(model, opt, scaler, x, y, dtypes[d], 3)  # warm-up (cuDNN autotune)
        state[name] = (model, opt, scaler, x, y, dtypes[d], torch.cuda.max_memory_allocated() / 2**20)
    for _ in range(args.repeats):
        for name in variants:
            model, opt, scaler, x, y, dt, _ = state[name]
            times[name].append(_steps(model, opt, scaler, x, y, dt, args.steps))
    rows = [{"bench": "gpu", "variant": k, "batch": args.batch, "size": args.size,
             "images_per_s": round(args.batch / statistics.median(v), 1),
             "ms_per_step": round(1000 * statistics.median(v), 2), "peak_mib": round(state[k][6])}
            for k, v in times.items()]
    best = max(rows, key=lambda r: r["images_per_s"])
    del state
    torch.cuda.empty_cache()
    return rows, best


def compiled(args, best: dict) -> dict:
    """``torch.compile`` of the fastest variant: compile seconds and images/s against eager, interleaved."""
    import torch

    d, cl = best["variant"].split("+")[0], best["variant"].endswith("+cl")
    dt = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[d]
    model, opt = _model(args.classes, cl)
    cmodel = torch.compile(model)
    scaler = torch.amp.GradScaler("cuda", enabled=d == "fp16")
    x, y = _batch(args.batch, args.size, args.classes, cl)
    t = time.perf_counter()
    _steps(cmodel, opt, scaler, x, y, dt, 3)
    compile_s = time.perf_counter() - t
    _steps(model, opt, scaler, x, y, dt, 3)
    eager, comp = [], []
    for _ in range(args.repeats):
        eager.append(_steps(model, opt, scaler, x, y, dt, args.steps))
        comp.append(_steps(cmodel, opt, scaler, x, y, dt, args.steps))
    return {"bench": "gpu", "variant": best["variant"] + "+compile", "batch": args.batch, "size": args.size,
            "images_per_s": round(args.batch / statistics.median(comp), 1),
            "eager_images_per_s": round(args.batch / statistics.median(eager), 1),
            "ms_per_step": round(1000 * statistics.median(comp), 2), "compile_s": round(compile_s, 1)}


def largest_batch(args, best: dict, limit: int = 8192) -> dict:
    """The largest training batch of the fastest variant that fits: doubling from ``args.batch``, then bisection."""
    import torch

    d, cl = best["variant"].split("+")[0], best["variant"].endswith("+cl")
    dt = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[d]
    model, opt = _model(args.classes, cl)
    scaler = torch.amp.GradScaler("cuda", enabled=d == "fp16")

    def fits(n: int) -> bool:
        try:
            x, y = _batch(n, args.size, args.classes, cl)
            _steps(model, opt, scaler, x, y, dt, 1)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            opt.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()

    lo, hi = 0, args.batch
    while hi <= limit and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > max(1, lo // 32):  # within about 3 %
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return {"bench": "gpu", "variant": best["variant"], "largest_batch": lo, "searched_up_to": limit,
            "total_mib": round(torch.cuda.get_device_properties(0).total_memory / 2**20)}


def busy_share(args, best: dict) -> list[dict]:
    """GPU busy share while seglib's real loader feeds the fastest variant: preloaded step time / loader step time."""
    import torch

    from seglib.config import TrainConfig
    from seglib.segmentation import SegmentationRun
    from seglib.train.trainer import Trainer

    rows = []
    d, cl = best["variant"].split("+")[0], best["variant"].endswith("+cl")
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (None, 2):
            cfg = TrainConfig(experiment="gpu_bench", n_classes=args.classes, img_size=args.size, batch_size=args.batch,
                              epochs=1, encoder_weights=None, optimizer="adamw", loss="ce", scheduler="none",
                              augment="street", amp=d != "fp32", channels_last=cl, num_workers=workers,
                              checkpoint_minutes=1e9, log_images=0)
            synth = {"n_train": 4 * args.batch, "n_val": 8, "n_test": 0, "size": 256} if args.data == "synthetic" else None
            run = SegmentationRun(cfg, args.data, workdir=Path(tmp) / f"w{workers}", synthetic_kwargs=synth,
                                  device="cuda")
            run.prepare(check=False)
            tr: Trainer = run.trainer(progress=False)
            tr.model.train()
            loader = tr.train_loader
            loader.sampler.set_epoch(1)
            n = 0
            for _batch in loader:  # warm-up pass: workers started, cache filled
                n += 1
            times, pre = [], []
            for rep in range(2):
                loader.sampler.set_epoch(2 + rep)
                torch.cuda.synchronize()
                t = time.perf_counter()
                for batch in loader:
                    _, _, _, loss = tr._forward(batch)
                    tr.optimizer.zero_grad(set_to_none=True)
                    tr.scaler.scale(loss).backward()
                    tr.scaler.step(tr.optimizer)
                    tr.scaler.update()
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t) / n)
                fixed = batch
                torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(n):
                    _, _, _, loss = tr._forward(fixed)
                    tr.optimizer.zero_grad(set_to_none=True)
                    tr.scaler.scale(loss).backward()
                    tr.scaler.step(tr.optimizer)
                    tr.scaler.update()
                torch.cuda.synchronize()
                pre.append((time.perf_counter() - t) / n)
            real, gpu = statistics.median(times), statistics.median(pre)
            rows.append({"bench": "gpu", "variant": f"{best['variant']} real loader", "data": args.data,
                         "num_workers": loader.num_workers, "pin_memory": loader.pin_memory,
                         "cache": tr.train_loader.dataset.__dict__.get("cache_mode", cfg.cache),
                         "batch": args.batch, "loader_images_per_s": round(args.batch / real, 1),
                         "preloaded_images_per_s": round(args.batch / gpu, 1),
                         "gpu_busy_share": round(min(1.0, gpu / real), 3)})
            del tr, loader
    return rows


def markdown(rows: list[dict], m: dict) -> str:
    lines = ["### GPU: the JetCar U-Net at 224 px", "",
             f"`benchmarks/gpu.sh` on {m.get('gpu')} ({m.get('cores')} CPU cores), torch {m.get('torch')}. Training "
             "steps (forward, cross-entropy, backward, AdamW) on tensors already on the GPU, every variant round-robin, "
             "medians; then the fastest variant fed by seglib's real training loader.", "",
             "| variant | batch | images/s | ms/step | peak MiB | notes |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "images_per_s" in r:
            note = f"compile {r['compile_s']} s; eager {r['eager_images_per_s']} img/s" if "compile_s" in r else ""
            lines.append(f"| {r['variant']} | {r['batch']} | {r['images_per_s']} | {r['ms_per_step']} | "
                         f"{r.get('peak_mib', '')} | {note} |")
    for r in rows:
        if "largest_batch" in r:
            lines.append(f"\nLargest batch that fits ({r['variant']}, {r['total_mib']} MiB GPU): **{r['largest_batch']}**"
                         f" (searched up to {r['searched_up_to']}).")
        if "gpu_busy_share" in r:
            lines.append(f"\nReal loader ({r['data']}, {r['num_workers']} workers, pin_memory {r['pin_memory']}): "
                         f"{r['loader_images_per_s']} images/s against {r['preloaded_images_per_s']} preloaded: GPU busy "
                         f"**{100 * r['gpu_busy_share']:.0f} %**.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--classes", type=int, default=22)
    p.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", default="synthetic", help="data of the real-loader test: synthetic or a folder")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile (adds about a minute)")
    p.add_argument("--no-largest", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true", help="accepted for make bench; the GPU run is short anyway")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA GPU found; nothing measured (results/gpu.json, if any, is kept)")
        return 0
    t0 = time.monotonic()
    torch.backends.cudnn.benchmark = True
    rows, best = throughput(args)
    print_table(rows, ["variant", "batch", "images_per_s", "ms_per_step", "peak_mib"])
    if args.compile:
        try:
            rows.append(compiled(args, best))
            print(rows[-1])
        except Exception as err:  # noqa: BLE001 - compile failing is a figure too
            rows.append({"bench": "gpu", "variant": best["variant"] + "+compile", "error": f"{type(err).__name__}: {err}"})
            print(rows[-1])
    if not args.no_largest:
        rows.append(largest_batch(args, best))
        print(rows[-1])
    rows += busy_share(args, best)
    for r in rows[-2:]:
        print(r)
    m = machine()
    fp32 = next(r for r in rows if r.get("variant") == "fp32")
    targets = [target("GPU: fastest variant vs fp32 (images/s ratio)", round(best["images_per_s"] / fp32["images_per_s"], 2),
                      "report", True, None)]
    write_results("gpu", rows, targets, markdown(rows, m), out=args.out, seconds=time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
