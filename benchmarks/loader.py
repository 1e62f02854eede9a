"""Input-pipeline benchmark: samples per second of the training loader on CamVid, against the originals.

Variants, measured side by side in one process (round-robin repeats after one warm-up pass each, medians):

(a) the originals' per-sample PIL pipeline (the JetCar notebook's Dataset, ../shared/reference/originals.md:
    PIL open RGB, ``resize((S, S))``, RGB to BGR, ``to_tensor``, ImageNet normalisation reversed for BGR; mask
    ``pil_to_tensor().squeeze().long()`` one-hot to C channels; no augmentation; DataLoader without workers);
(b) seglib's training loader (:func:`seglib.data.datasets.make_loader`, decode, resize, the training
    augmentation, normalise, collate) with ``cache="none"``;
(c) the same with the RAM cache warm, and its first (filling) epoch;
(d) the same with the disk cache warm;
each of (b)-(d) with 0 and 2 workers. A unit of work is one epoch over the train split. Then a CPU training
step (U-Net MobileNetV2, Adam, cross-entropy) fed by the loader with and without cache and workers: the
measurement behind :func:`seglib.runtime.default_num_workers`.

    python -m benchmarks.loader [--quick] [--out benchmarks/results/loader.json]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import (  # noqa: E402
    arg_parser,
    emit,
    interleaved,
    median,
    print_machine,
    print_table,
    table,
    target,
    write_results,
)
from seglib.data.cache import cache_folder  # noqa: E402
from seglib.data.datasets import SegmentationDataset, make_loader  # noqa: E402
from seglib.data.layouts import load_splits  # noqa: E402
from seglib.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

NAME = "loader"
CAMVID = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid_segnet"


class OriginalDataset(torch.utils.data.Dataset):
    """The JetCar notebook's dataset (seed 001), per sample: PIL decode, resize, BGR, to_tensor, normalise;
    the mask as a one-hot ``float32 C x S x S``. Items ``(image float32 3 x S x S, mask float32 C x S x S)``."""

    def __init__(self, samples, size: int, n_classes: int):
        self.samples, self.size, self.n_classes = samples, size, n_classes
        self.mean = torch.tensor(IMAGENET_MEAN[::-1]).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD[::-1]).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        from torchvision.transforms import functional as TF

        s = self.samples[i]
        img = Image.open(s.image).convert("RGB").resize((self.size, self.size))
        bgr = np.ascontiguousarray(np.asarray(img)[..., ::-1])
        x = (TF.to_tensor(bgr) - self.mean) / self.std
        m = TF.pil_to_tensor(Image.open(s.mask).resize((self.size, self.size), Image.NEAREST)).squeeze().long()
        return x, F.one_hot(m, self.n_classes).permute(2, 0, 1).float()


def copy_samples(samples, folder: Path) -> list:
    """Copies of the samples' files in ``folder`` (their times can be changed without touching the originals)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, s in enumerate(samples):
        image, mask = folder / f"{i}{s.image.suffix}", folder / f"{i}_mask{s.mask.suffix}"
        shutil.copyfile(s.image, image)
        shutil.copyfile(s.mask, mask)
        out.append(type(s)(s.name, image, mask))
    return out


def epoch_fn(loader, counter):
    """One pass over ``loader`` (a new epoch each call) as a timed unit."""
    def run():
        counter[0] += 1
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(counter[0])
        for _ in loader:
            pass
    return run


def loader_rows(samples, size, augment, repeats, tmp):
    """Samples/s of every loader variant (module docstring), measured interleaved."""
    n = len(samples)
    ds = {c: SegmentationDataset(samples, 12, size, augment, seed=0, ignore_index=11) for c in ("none", "ram", "disk")}
    ds["ram"].use_cache("ram", None, (size,), name="train split")
    ds["disk"].use_cache("disk", cache_folder(tmp), (size,), name="train split")
    fns, counters = {}, {}
    orig = torch.utils.data.DataLoader(OriginalDataset(samples, size, 12), batch_size=8, shuffle=True, num_workers=0)
    fns["(a) originals, PIL"], counters["(a) originals, PIL"] = epoch_fn(orig, [0]), (None, 0)
    for c, label in (("none", "(b) seglib, no cache"), ("ram", "(c) seglib, RAM cache"), ("disk", "(d) seglib, disk cache")):
        for w in (0, 2):
            loader = make_loader(ds[c], 8, shuffle=True, seed=0, num_workers=w)
            fns[f"{label}, {w} workers"] = epoch_fn(loader, [0])
            counters[f"{label}, {w} workers"] = (c, w)

    plain = SegmentationDataset(samples, 12, size, "none", seed=0, ignore_index=11).use_cache("ram", None, (size,))
    label = "(c) seglib, RAM cache, augmentation none (as the originals), 0 workers"
    fns[label], counters[label] = epoch_fn(make_loader(plain, 8, shuffle=True, seed=0, num_workers=0), [0]), ("ram", 0)
    copies = copy_samples(samples, Path(tmp) / "copies")
    stamp = [0]

    def cold():  # a fresh RAM cache: new modification times make new cache keys, so the first epoch fills it
        stamp[0] += 1
        for s in copies:
            for f in (s.image, s.mask):
                os.utime(f, ns=(stamp[0] * 10**9, stamp[0] * 10**9))
        d = SegmentationDataset(copies, 12, size, augment, seed=0, ignore_index=11).use_cache("ram", None, (size,))
        epoch_fn(make_loader(d, 8, shuffle=True, seed=0, num_workers=0), [0])()
        assert d.cache.misses == len(copies) - 1, "the cold pass must decode every sample"
    fns["(c) seglib, RAM cache first epoch, 0 workers"] = cold
    counters["(c) seglib, RAM cache first epoch, 0 workers"] = ("ram (fill)", 0)
    times = interleaved(fns, repeats)
    base = n / median(times["(a) originals, PIL"])
    rows = []
    for name, ts in times.items():
        cache, workers = counters[name] if counters[name][0] else ("originals", 0)
        sps = n / median(ts)
        row = {"variant": name, "cache": cache, "workers": workers, "samples_per_s": round(sps, 1),
               "x_originals": round(sps / base, 2), "repeats": len(ts), "size": size, "samples": n}
        emit(NAME, **row)
        rows.append(row)
    return rows, ds["ram"].cache.nbytes


def train_rows(samples, size, augment, steps, repeats, tmp):
    """Seconds per CPU training step when the loader feeds a U-Net MobileNetV2 (cache x workers), interleaved."""
    from seglib.models.registry import build_model

    samples = samples[: steps * 8]
    model = build_model("unet_mobilenet_v2", classes=12, encoder_weights=None)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    fns = {}
    for c in ("none", "ram"):
        d = SegmentationDataset(samples, 12, size, augment, seed=0, ignore_index=11)
        if c == "ram":
            d.use_cache("ram", None, (size,))
        for w in (0, 2):
            loader = make_loader(d, 8, shuffle=True, seed=0, num_workers=w)
            counter = [0]

            def run(loader=loader, counter=counter):
                counter[0] += 1
                loader.sampler.set_epoch(counter[0])
                for batch in loader:
                    loss = F.cross_entropy(model(batch["input"]), batch["target"], ignore_index=11)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            fns[f"train step, cache {c}, {w} workers"] = run
    times = interleaved(fns, repeats)
    rows = []
    for name, ts in times.items():
        row = {"variant": name, "seconds_per_step": round(median(ts) / steps, 4), "steps": steps,
               "repeats": len(ts), "size": size, "torch_threads": torch.get_num_threads()}
        emit(NAME, **row)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--data", default=str(CAMVID), help="CamVid folder (camvid_segnet pairs layout)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--augment", default="flip", help="the training augmentation (CamVid: flip)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=3, help="steps per timed training unit (0: skip)")
    p.add_argument("--train-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, one per core)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    m = print_machine()
    if not Path(a.data).exists():
        print(f"loader benchmark skipped: {a.data} not found (CamVid lives in ../shared/data)", flush=True)
        write_results(NAME, [], [target("RAM cache warm / originals", None, ">= 10x", False, f"no data at {a.data}")],
                      f"### Input pipeline\n\nSkipped: no CamVid data at `{a.data}`.\n", a.out,
                      time.perf_counter() - t0, {"skipped": True})
        return 0
    size, repeats = (96, 2) if a.quick else (a.size, a.repeats)
    _, splits = load_splits(a.data, "auto")
    samples = splits["train"][:16] if a.quick else splits["train"]
    with tempfile.TemporaryDirectory() as tmp:
        rows, ram_bytes = loader_rows(samples, size, a.augment, repeats, tmp)
        steps = min(1, a.train_steps) if a.quick else a.train_steps
        tsize = 64 if a.quick else size
        trows = train_rows(samples, tsize, a.augment, steps, 1 if a.quick else a.train_repeats,
                           tmp) if steps else []
    cols = ["variant", "workers", "samples_per_s", "x_originals"]
    print_table(rows, cols)
    if trows:
        print_table(trows, ["variant", "seconds_per_step", "torch_threads"])
    best = max((r for r in rows if r["cache"] == "ram" and "augmentation none" not in r["variant"]),
               key=lambda r: r["samples_per_s"])
    like = next(r for r in rows if "augmentation none" in r["variant"])
    none0 = next(r for r in rows if r["cache"] == "none" and r["workers"] == 0)
    ratio = best["x_originals"]
    targets = [target(f"RAM cache warm ({best['workers']} workers) / originals' PIL pipeline, {size} px", ratio,
                      ">= 10x", ratio >= 10,
                      f"warm RAM loader {best['samples_per_s']} samples/s: the training augmentation (affine warps), "
                      "normalisation and collate remain per sample; the originals did no augmentation"),
               target(f"RAM cache warm, no augmentation (the originals' work) / originals' PIL pipeline, {size} px",
                      like["x_originals"], ">= 10x", like["x_originals"] >= 10,
                      f"warm RAM loader without augmentation {like['samples_per_s']} samples/s")]
    md = [f"### Input pipeline ({'quick, ' if a.quick else ''}CamVid train split, {len(samples)} samples, {size} px, "
          f"augmentation `{a.augment}`)",
          "",
          "Samples per second of one epoch through each loader, batch 8: the originals' per-sample PIL pipeline "
          "(JetCar notebook: PIL resize, BGR, to_tensor, normalise, one-hot mask), and seglib's `make_loader` "
          "(decode, resize, augmentation, normalisation, collate) without cache, with the RAM cache "
          f"({ram_bytes / 1e6:.0f} MB) and with the disk cache, each with 0 and 2 workers. All variants run "
          f"round-robin in one process, {repeats} repeats after a warm-up pass, medians.",
          "",
          table(rows, cols, markdown=True), ""]
    if trows:
        md += [f"CPU training step (U-Net MobileNetV2, Adam, batch 8, {tsize} px, {torch.get_num_threads()} torch "
               "threads) fed by the loader, interleaved the same way; the basis of `default_num_workers`:", "",
               table(trows, ["variant", "seconds_per_step"], markdown=True), ""]
    md += [f"Target: RAM cache warm >= 10x the originals: {ratio:.1f}x with the training augmentation "
           f"({'met' if ratio >= 10 else 'not met'}), {like['x_originals']:.1f}x doing the originals' work (no "
           f"augmentation; {'met' if like['x_originals'] >= 10 else 'not met'}); "
           f"decode is {1 - none0['samples_per_s'] / best['samples_per_s']:.0%} of the uncached loader's time."]
    write_results(NAME, rows + trows, targets, "\n".join(md) + "\n", a.out, time.perf_counter() - t0,
                  {"quick": a.quick, "ram_cache_bytes": ram_bytes})
    _ = m
    return 0


if __name__ == "__main__":
    sys.exit(main())
