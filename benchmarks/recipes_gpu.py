"""How the ``"fast"`` recipe was chosen: many recipes trained to the end on a GPU, scored against CPU training time.

Quality for time on the 2-core CPU is the target, but one 12-minute CPU run per candidate recipe is too slow to
compare many. The validation curve of a recipe as a function of *epochs* does not depend on the device (same
data, seeds and fp32 arithmetic; only the order of floating-point reductions differs), and the CPU time of an epoch
depends only on its image size and batch. So every candidate trains on a GPU in fp32 (several at once), and each
epoch is charged the CPU training seconds measured for its size (``--cpu-costs``: seconds per training image at
each side length on the 2-core CPU, from ``benchmarks/overhead.py`` or the table below). The score of a recipe is
its best validation mIoU within ``--budget`` CPU seconds. The recipes' real CPU runs are in ``quality.py``.

    python -m benchmarks.recipes_gpu --data <camvid_segnet> --parallel 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, target, write_results  # noqa: E402

CPU_SECONDS_PER_IMAGE = {96: 0.066, 128: 0.103, 160: 0.150, 192: 0.220, 224: 0.274}
"""Training seconds per image (forward, loss, backward, step; batch 8, 2 threads) of the JetCar U-Net on the 2-core
CPU, measured 2026-11-28 (AMD EPYC, torch 2.13); the loader with a warm cache adds a few per cent."""

CANDIDATES = {
    "fast": {},
    "fast lr 1e-3": {"lr": 1e-3},
    "fast lr 1e-2": {"lr": 1e-2},
    "fast ce": {"loss": "ce"},
    "fast batch 16": {"batch_size": 16},
    "fast street aug": {"augment": "street"},
    "fast wd 1e-2": {"weight_decay": 1e-2},
    "fast 224 only (26 ep)": {"resize_schedule": None, "epochs": 26},
    "fast 60 ep": {"epochs": 60},
    "original": {"recipe": "original"},
    "plain: adam 1e-3 ce flip 224 (26 ep)": {"optimizer": "adam", "lr": 1e-3, "loss": "ce", "augment": "flip",
                                             "scheduler": "none", "resize_schedule": None, "epochs": 26,
                                             "weight_decay": 0.0, "encoder_weight_decay": None, "monitor": "val_miou"},
}

CHILD = r"""
import json, sys, time
import torch
from seglib.config import TrainConfig
from seglib.recipes import recipe_config
from seglib.segmentation import SegmentationRun
a = json.loads(sys.argv[1])
ov = dict(a["overrides"])
recipe, epochs = ov.pop("recipe", "fast"), ov.pop("epochs", a["epochs"])
torch.backends.cudnn.benchmark = True
kw = recipe_config(recipe, epochs=epochs, img_size=a["size"])
kw.update(ov)  # explicit values, None included (recipe_config would read None as "the recipe's")
cfg = TrainConfig(**kw, experiment="recipe", n_classes=12, ignore_index=11, encoder_weights=None, amp=False,
                  channels_last=False, checkpoint_minutes=1e9, log_images=0, seed=a["seed"], num_workers=a["workers"])
run = SegmentationRun(cfg, a["data"], workdir=a["workdir"], device=a["device"])
run.prepare(check=False)
r = run.train(progress=False, epoch_table=False)
print("RESULT", json.dumps({"history": [{k: h[k] for k in ("epoch", "img_size", "lr", "train_loss", "val_loss",
                                                             "val_miou", "train_seconds")} for h in r.history],
                            "config": cfg.to_dict()}))
"""


def cpu_seconds(history: list[dict], batch: int, n_train: int, costs: dict) -> list[float]:
    """Cumulative CPU training seconds after each epoch (per-image cost at the epoch's size, interpolated)."""
    sizes = sorted(costs)
    out, total = [], 0.0
    for h in history:
        s = h["img_size"]
        lo = max([x for x in sizes if x <= s] or [sizes[0]])
        hi = min([x for x in sizes if x >= s] or [sizes[-1]])
        c = costs[lo] if hi == lo else costs[lo] + (costs[hi] - costs[lo]) * (s - lo) / (hi - lo)
        total += c * n_train * (1.0 if batch <= 8 else 0.97)
        out.append(total)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--budget", type=float, default=720.0, help="CPU training seconds")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None)
    p.add_argument("--log", default=None, help="append each finished candidate's JSON line here")
    args = p.parse_args(argv)
    n_train = len((Path(args.data) / "splits" / "train.txt").read_text().split())
    t0, rows = time.monotonic(), []
    names = [n for n in CANDIDATES if not args.only or n in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        queue, running = list(names), {}
        while queue or running:
            while queue and len(running) < args.parallel:
                name = queue.pop(0)
                a = {"overrides": CANDIDATES[name], "epochs": args.epochs, "size": args.size, "data": args.data,
                     "workdir": str(Path(tmp) / str(len(running)) / name.replace(" ", "_").replace(":", "")),
                     "seed": args.seed, "workers": args.workers, "device": args.device}
                running[name] = (subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(a)], stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True, env={**os.environ}), time.monotonic())
            for name, (proc, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                out = proc.stdout.read()
                line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    rows.append({"bench": "recipes_gpu", "recipe": name, "error": out[-2000:]})
                    print(rows[-1], flush=True)
                    continue
                res = json.loads(line[7:])
                hist, cfg = res["history"], res["config"]
                cum = cpu_seconds(hist, cfg["batch_size"], n_train, CPU_SECONDS_PER_IMAGE)
                within = [h["val_miou"] for h, c in zip(hist, cum) if c <= args.budget]
                row = {"bench": "recipes_gpu", "recipe": name, "overrides": CANDIDATES[name],
                       "best_miou_within_budget": round(max(within), 4) if within else None,
                       "best_miou": round(max(h["val_miou"] for h in hist), 4), "epochs": len(hist),
                       "cpu_seconds": round(cum[-1]), "gpu_seconds": round(time.monotonic() - started),
                       "curve": [[round(c), round(h["val_miou"], 4), h["img_size"]] for h, c in zip(hist, cum)]}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)
                if args.log:
                    with open(args.log, "a") as f:
                        f.write(json.dumps(row) + "\n")
            time.sleep(1)
    ok = [r for r in rows if "error" not in r]
    ok.sort(key=lambda r: -(r["best_miou_within_budget"] or 0))
    md = ["### How the fast recipe was chosen (CamVid, epochs on a GPU, charged CPU seconds)", "",
          f"Each candidate trained {args.epochs} epochs (unless its name says otherwise) in fp32 on a GPU; each epoch "
          f"was charged the 2-core CPU's measured training seconds for its image size; the score is the best val "
          f"mIoU within {args.budget:.0f} CPU seconds (random init, seed {args.seed}).", "",
          "| recipe | best val mIoU within budget | best val mIoU | epochs | CPU s (charged) |", "|---|---|---|---|---|"]
    md += [f"| {r['recipe']} | {r['best_miou_within_budget']} | {r['best_miou']} | {r['epochs']} | {r['cpu_seconds']} |"
           for r in ok]
    best = ok[0] if ok else None
    targets = [target("recipe search: best val mIoU within 720 CPU s (projected)",
                      best["best_miou_within_budget"] if best else None, ">= 0.55",
                      bool(best and best["best_miou_within_budget"] >= 0.55), None if best else "no candidate finished")]
    write_results("recipes_gpu", rows, targets, "\n".join(md) + "\n", out=args.out, seconds=time.monotonic() - t0,
                  extra={"machine_note": machine().get("gpu")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
