"""The two training engines side by side: seconds per epoch and validation mIoU, same data, model and seed.

Runs the seglib engine and the Catalyst engine (``ENGINE="catalyst"``) one after the other, each in its own
process (so neither warms the other's caches or shares accelerate's global state), and prints one row per
engine: median and mean seconds per epoch, final and best validation mIoU and loss, and the 1-minute load
average before and after (on a shared machine, timings are only comparable at similar load).

    python benchmarks/engines.py --data ../shared/data/camvid_segnet --classes 12 --ignore 11 --size 128 \\
        --batch 8 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, os, sys, time
import torch
from seglib.config import TrainConfig
from seglib.segmentation import SegmentationRun
a = json.loads(sys.argv[1])
if a["threads"]:
    torch.set_num_threads(a["threads"])
cfg = TrainConfig(experiment="engines", n_classes=a["classes"], ignore_index=a["ignore"], img_size=a["size"],
                  batch_size=a["batch"], epochs=a["epochs"], augment=a["augment"], encoder_weights=None,
                  num_workers=a["workers"], checkpoint_minutes=1e9, seed=a["seed"], lr=a["lr"])
run = SegmentationRun(cfg, a["data"], workdir=a["workdir"], device=a["device"])
run.prepare(check=False)
load0, t0 = os.getloadavg()[0], time.monotonic()
r = run.train(progress=False, engine=a["engine"])
print("RESULT", json.dumps({"history": [{k: v for k, v in h.items() if not isinstance(v, list)} for h in r.history],
                            "best": r.best, "total": time.monotonic() - t0, "load": [load0, os.getloadavg()[0]],
                            "threads": torch.get_num_threads()}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic")
    p.add_argument("--classes", type=int, default=22)
    p.add_argument("--ignore", type=int, default=None)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--augment", default="flip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--engines", default="seglib,catalyst")
    p.add_argument("--json", help="also write the results here")
    a = p.parse_args()
    rows = {}
    for engine in a.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            args = {**vars(a), "engine": engine, "workdir": tmp}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                                 env=dict(os.environ, HF_HUB_OFFLINE="1"), check=False)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{engine} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            rows[engine] = json.loads(line[len("RESULT "):])
    print(f"{'engine':9} {'s/epoch med':>11} {'mean':>6} {'first':>6} {'mIoU last':>9} {'mIoU best':>9} "
          f"{'loss last':>9} {'load':>11} threads")
    for engine, r in rows.items():
        secs = [h["seconds"] for h in r["history"]]
        last = r["history"][-1]
        print(f"{engine:9} {statistics.median(secs):11.1f} {statistics.mean(secs):6.1f} {secs[0]:6.1f} "
              f"{last['val_miou']:9.4f} {max(h['val_miou'] for h in r['history']):9.4f} {last['val_loss']:9.4f} "
              f"{r['load'][0]:5.1f}->{r['load'][1]:<5.1f} {r['threads']}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
