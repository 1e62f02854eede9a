"""Quality for time: val metric against training seconds, side by side, on CamVid (mIoU) and ISBI 2012 (Dice).

Contenders, each given the same budget of training seconds (``train_seconds`` of ``history.json``: the training
steps of an epoch, not validation, checkpoints or the LR finder, whose seconds are listed apart):

- CamVid subset (92 train / 101 val, random init): (a) the plain loop (:mod:`benchmarks.plain_loop`), (b) the
  JetCar notebook's ``RECIPE = "original"`` and (c) its default ``RECIPE = "fast"`` with ``LR = "find"``, both
  through :class:`seglib.segmentation.SegmentationRun` as the notebook builds it (``seglib.recipes.recipe_config``).
- ISBI 2012 membranes (24 / 6 as the study splits them): (a) the plain loop, (b) the study notebook's base trial
  (its defaults), (b') the study's best configuration so far (Adam 4e-3, plateau, BCE + Dice) and (c)
  :data:`ISBI_FAST`, the recipe built from the study's trial settings (:class:`seglib.hparam.HParamRun`).

The epochs of each seglib contender are chosen so that its training fits the budget, from the plain loop's
measured seconds per epoch scaled by image area (progressive resizing counted per epoch). Curves go to
``docs/quality_camvid.png`` and ``docs/quality_isbi.png``. ``--target`` runs the issue's target check instead:
the JetCar notebook headless with its defaults (``DATA``, ``N_CLASSES``, ``IGNORE_INDEX``, ``CLASS_NAMES``,
``EPOCHS=40`` set, plus a fresh ``WORKDIR``), val mIoU >= 0.55 within 720 training seconds, and
:data:`ISBI_FAST` for ``--isbi-epochs`` epochs, val Dice >= 0.86; it writes ``results/quality_target.json``,
whose targets the default run repeats.

Budgets: ``make bench`` runs the defaults, CamVid 45 training s per contender at 160 px and ISBI 25 s (about 6 min
on 2 cores in all: a few epochs each, so the curves show the start of training only); ``--camvid-budget 720
--camvid-size 224`` is the issue's comparison (about 45 min). ``--target`` takes about 30 min on 2 cores.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import plain_loop  # noqa: E402
from benchmarks.common import RESULTS_DIR, arg_parser, emit, print_machine, table, target, write_results  # noqa: E402
from seglib.tune.specs import FAST_BASE  # noqa: E402

NAME = "quality"
ROOT = Path(__file__).resolve().parents[1]
CAMVID_NAMES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
                "Bicyclist", "Unlabelled"]
ISBI_FAST = {"base": dict(FAST_BASE), "img_size": 256, "width_divisor": 4, "batchnorm": True, "batch_size": 4}
"""The fastest ISBI recipe found (study notebook settings): ``BASE`` = Adam 3e-3 with the one-cycle schedule over
the trial, BCE + Dice, rotation +-20 deg and flips; ``BATCHNORM = True``, ``IMG_SIZE = 256``, ``BATCH_SIZE = 4``."""
ISBI_STUDY_DEFAULT = {"base": {}, "img_size": 128, "width_divisor": 4, "batchnorm": False, "batch_size": 4}
"""The study notebook's defaults: its base trial (Adam at seed 004's LR, plateau, BCE + switching, no augmentation)."""
ISBI_STUDY_BEST = {"base": {"optimizer": "adam", "lr": 4e-3, "scheduler": "plateau", "loss": "bce_dice"},
                   "img_size": 128, "width_divisor": 4, "batchnorm": False, "batch_size": 4}
"""The best configuration of the README's ISBI study (Adam 4e-3, ReduceLROnPlateau, BCE + Dice; val Dice 0.749)."""
CAMVID_TARGET = {"miou": 0.55, "seconds": 720.0}
ISBI_TARGET = 0.86


def cumulative(history: list[dict], metric: str) -> list[dict]:
    """``[{"epoch", "train_seconds" (cumulative), "metric"}]`` from history records (per-epoch ``train_seconds``)."""
    out, total = [], 0.0
    for rec in history:
        total += float(rec["train_seconds"])
        out.append({"epoch": int(rec["epoch"]), "train_seconds": round(total, 2), "metric": float(rec[metric])})
    return out


def best_within(curve: list[dict], seconds: float) -> float | None:
    """Best metric among the epochs finished within ``seconds`` cumulative training seconds (None: none did)."""
    vals = [c["metric"] for c in curve if c["train_seconds"] <= seconds and c["metric"] == c["metric"]]
    return max(vals) if vals else None


def epochs_for(budget_s: float, sec_per_epoch: float, img_size: int, schedule=None, cap: int = 500, low: int = 2) -> int:
    """Epochs whose summed cost ``sec_per_epoch x (side / img_size)^2`` fits ``budget_s`` (at least ``low``).

    ``schedule``: ``epochs -> resize schedule or None`` (the schedule depends on the run's length).
    Raises ValueError for a non-positive ``sec_per_epoch``."""
    from seglib.data.transforms import size_for_epoch

    if not sec_per_epoch > 0:
        raise ValueError(f"sec_per_epoch must be > 0, got {sec_per_epoch}")
    best = low
    for n in range(low, cap + 1):
        sched = schedule(n) if schedule else None
        cost = sum(sec_per_epoch * (size_for_epoch(e, img_size, sched) / img_size) ** 2 for e in range(1, n + 1))
        if cost > budget_s:
            break
        best = n
    return best


def sec_per_epoch(curve: list[dict]) -> float:
    """Median training seconds of one epoch of a curve (the first epoch, warm-up, left out when there are more)."""
    import statistics

    secs = [b["train_seconds"] - a["train_seconds"] for a, b in zip([{"train_seconds": 0.0}] + curve, curve)]
    return float(statistics.median(secs[1:] if len(secs) > 1 else secs))


def camvid_seglib(recipe: str, epochs: int, size: int, workdir: Path, find: bool, find_steps: int | None = None,
                  smoke: bool = False) -> dict:
    """One JetCar-notebook run on CamVid with ``recipe`` (random init, CamVid's 12 classes, void 11); ``smoke``: a
    few images per split (:class:`~seglib.segmentation.SegmentationRun`'s SMOKE subset)."""
    from seglib.config import TrainConfig
    from seglib.recipes import recipe_config
    from seglib.segmentation import SegmentationRun

    kw = recipe_config(recipe, epochs=epochs, img_size=size)
    cfg = TrainConfig(**kw, experiment=f"quality_{recipe}", model="unet_mobilenet_v2", encoder_weights=None,
                      n_classes=12, ignore_index=11, seed=0)
    run = SegmentationRun(cfg, str(plain_loop.CAMVID), workdir=workdir, class_names=CAMVID_NAMES,
                          notebook="benchmarks/quality", smoke=smoke)
    run.prepare(check=False)
    t0 = time.monotonic()
    if find:
        run.find_lr(steps=find_steps)
    find_s = time.monotonic() - t0 if find else 0.0
    fit = run.train(progress=False, epoch_table=False)
    return {"curve": cumulative(fit.history, "val_miou"), "lr": run.cfg.lr, "find_seconds": round(find_s, 1),
            "epochs": epochs, "settings": {k: kw[k] for k in ("optimizer", "loss", "scheduler", "batch_size",
                                                              "augment", "resize_schedule")}}


def isbi_seglib(setting: dict, epochs: int, workdir: Path, smoke: bool = False) -> dict:
    """The study's base trial of ``setting`` (:data:`ISBI_FAST`, ...) trained ``epochs`` epochs, no early stop;
    ``smoke``: a few images per split."""
    from seglib.hparam import HParamRun

    run = HParamRun(str(plain_loop.ISBI), workdir=workdir, invert_mask=True, width_divisor=setting["width_divisor"],
                    batchnorm=setting["batchnorm"], img_size=setting["img_size"], batch_size=setting["batch_size"],
                    trial_epochs=epochs, patience=None, base=setting["base"], smoke=smoke)
    run.prepare()
    trainer = run.base_trial.trainer(progress=False)
    trainer.fit()
    return {"curve": cumulative(trainer.history, "val_fg_dice"), "lr": run.base_trial.cfg.lr, "find_seconds": 0.0,
            "epochs": epochs, "settings": {**run.base, **{k: setting[k] for k in ("img_size", "batchnorm")}}}


def contenders(args, tmp: Path) -> list[dict]:
    """Run every contender of both datasets; one row each (curve included)."""
    import os

    rows = []

    def add(data: str, name: str, res: dict, budget: float) -> None:
        row = {"data": data, "contender": name, "budget_s": budget, "epochs": res.get("epochs", len(res["curve"])),
               "train_seconds": res["curve"][-1]["train_seconds"] if res["curve"] else 0.0,
               "metric": "val_miou" if data == "camvid" else "val_fg_dice",
               "best": max(c["metric"] for c in res["curve"]), "at_budget": best_within(res["curve"], budget),
               "lr": res.get("lr"), "find_seconds": res.get("find_seconds", 0.0), "settings": res.get("settings"),
               "load_avg": round(os.getloadavg()[0], 2), "curve": res["curve"]}
        emit(NAME, **{k: v for k, v in row.items() if k != "curve"})
        rows.append(row)

    cb, cs, ib, isz, q = args.camvid_budget, args.camvid_size, args.isbi_budget, args.isbi_size, args.quick
    if "camvid" in args.data:
        plain = plain_loop.camvid(cb, size=cs, limit=args.limit)
        add("camvid", "plain loop (Adam 1e-3, CE, flip)", {"curve": plain, "lr": 1e-3, "epochs": len(plain)}, cb)
        spe = sec_per_epoch(plain)
        from seglib.recipes import progressive_schedule

        e_orig = epochs_for(cb, spe, cs)
        add("camvid", 'notebook RECIPE="original"', camvid_seglib("original", e_orig, cs, tmp / "orig", False, smoke=q), cb)
        e_fast = epochs_for(cb, spe, cs, lambda n: progressive_schedule(n, cs), low=3 if q else 2)  # see below
        add("camvid", 'notebook RECIPE="fast", LR="find"',
            camvid_seglib("fast", e_fast, cs, tmp / "fast", True, args.find_steps, smoke=q), cb)
    if "isbi" in args.data:
        plain = plain_loop.isbi(ib, size=isz, limit=args.limit)
        add("isbi", f"plain loop (Adam 1e-3, BCE+Dice, BN, {isz} px)", {"curve": plain, "lr": 1e-3, "epochs": len(plain)}, ib)
        spe = sec_per_epoch(plain)
        for name, setting in (("study defaults (base trial)", ISBI_STUDY_DEFAULT),
                              ("study best config (Adam 4e-3, plateau, BCE+Dice)", ISBI_STUDY_BEST),
                              ("fast: one-cycle Adam 3e-3, BCE+Dice, rotate_flips, BN", ISBI_FAST)):
            setting = {**setting, "img_size": min(setting["img_size"], isz)}
            # low 3: torch's OneCycleLR divides by zero at exactly 4 steps (2 smoke batches x 2 epochs)
            e = epochs_for(ib, spe * (setting["img_size"] / isz) ** 2, setting["img_size"], low=3 if q else 2)
            add("isbi", name, isbi_seglib(setting, e, tmp / f"isbi_{len(rows)}", smoke=q), ib)
    return rows


def plot(rows: list[dict], data: str, path: Path) -> Path | None:
    """Metric against training minutes, one line per contender of ``data``; None when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["data"] == data]
    if not mine:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in mine:
        ax.plot([c["train_seconds"] / 60 for c in r["curve"]], [c["metric"] for c in r["curve"]], marker=".",
                label=f"{r['contender']} (best {r['best']:.3f})")
    ax.axvline(mine[0]["budget_s"] / 60, color="grey", ls=":", lw=1)
    ax.set_xlabel("training minutes (train_seconds, CPU)")
    ax.set_ylabel("val mIoU" if data == "camvid" else "val Dice (membrane)")
    ax.set_title(f"{'CamVid subset' if data == 'camvid' else 'ISBI 2012'}: quality for time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_target(args, tmp: Path) -> tuple[list[dict], list[dict]]:
    """The issue's target check (module docstring); returns ``(rows, targets)``."""
    from seglib.nbrun import run_notebook

    rows, targets = [], []
    wd = tmp / "jetcar_target"
    params = {"DATA": str(plain_loop.CAMVID), "N_CLASSES": 12, "IGNORE_INDEX": 11, "CLASS_NAMES": CAMVID_NAMES,
              "EPOCHS": args.camvid_epochs, "WORKDIR": str(wd), **({"SMOKE": True} if args.quick else {})}
    t0 = time.monotonic()
    run_notebook("jetcar_segmentation", params, out_dir=wd, timeout=7200)
    curve = cumulative(json.loads((wd / "history.json").read_text()), "val_miou")
    at = best_within(curve, CAMVID_TARGET["seconds"])
    rows.append({"data": "camvid", "contender": "JetCar notebook defaults, EPOCHS=40", "epochs": len(curve),
                 "train_seconds": curve[-1]["train_seconds"], "best": max(c["metric"] for c in curve),
                 "at_budget": at, "budget_s": CAMVID_TARGET["seconds"], "wall_seconds": round(time.monotonic() - t0),
                 "curve": curve})
    met = at is not None and at >= CAMVID_TARGET["miou"]
    targets.append(target("CamVid val mIoU within 720 training s (JetCar notebook defaults)", at, ">= 0.55", met,
                          None if met else f"best {rows[-1]['best']:.3f} in {curve[-1]['train_seconds']:.0f} training s; "
                          f"within 720 s: {at}"))
    res = isbi_seglib({**ISBI_FAST, "img_size": min(ISBI_FAST["img_size"], args.isbi_size)}, args.isbi_epochs,
                      tmp / "isbi_target", smoke=args.quick)
    best = max(c["metric"] for c in res["curve"])
    rows.append({"data": "isbi", "contender": "fast ISBI recipe", "epochs": res["epochs"], "budget_s": None,
                 "train_seconds": res["curve"][-1]["train_seconds"], "best": best, "at_budget": None,
                 "curve": res["curve"], "settings": res["settings"]})
    met = best >= ISBI_TARGET
    targets.append(target(f"ISBI val Dice (fast recipe, {args.isbi_epochs} epochs)", best, ">= 0.86", met,
                          None if met else f"best {best:.4f} after {res['curve'][-1]['train_seconds']:.0f} training s. "
                          "A plain-PyTorch sweep of 38 recipes x 2 seeds (GPU, fp32, up to 120 epochs, 256/512 px, "
                          "one-cycle, cosine, flips/rotations) plateaued at val Dice 0.83-0.84 on this 24/6 split; the seed's 0.8586 "
                          "was measured on another dataset (RVSC right ventricle, docs: reference/originals.md)"))
    for r in rows:
        emit(NAME, mode="target", **{k: v for k, v in r.items() if k != "curve"})
    return rows, targets


COLUMNS = ["data", "contender", "epochs", "train_seconds", "best", "at_budget", "lr", "find_seconds"]


def markdown(rows: list[dict], targets: list[dict], args) -> str:
    """The BENCHMARKS.md section (heading, method, table, target lines); ``args.target``: the target check's."""
    if args.target:
        lines = ["### Quality targets (`python benchmarks/quality.py --target`)", "",
                 f"The JetCar notebook run headless (papermill) with its defaults (RECIPE \"fast\", LR \"find\"), "
                 f"setting only DATA (CamVid subset), N_CLASSES 12, IGNORE_INDEX 11, CLASS_NAMES, EPOCHS "
                 f"{args.camvid_epochs} and a fresh WORKDIR; training seconds summed from its history.json. Then the "
                 f"fast ISBI recipe (study settings: {ISBI_FAST}) for {args.isbi_epochs} epochs, best val Dice.", "",
                 table(rows, COLUMNS[:6], markdown=True), ""]
        return "\n".join(lines + [_target_line(t) for t in targets])
    lines = ["### Quality for time (CamVid mIoU, ISBI Dice)", "",
             f"Each contender trains on the same budget of training seconds (CamVid {args.camvid_budget:.0f} s at "
             f"{args.camvid_size} px, ISBI {args.isbi_budget:.0f} s; `train_seconds` as in history.json: validation, "
             "checkpoints and the LR finder not counted, the finder's seconds listed apart), one after the other in "
             "one process, random init, val metric every epoch. Seglib contenders get the epochs that fit the budget "
             "at the plain loop's measured seconds per epoch (scaled by image area). `best` is over the whole run, "
             "`at_budget` over the epochs finished within the budget. Curves: `docs/quality_camvid.png`, "
             "`docs/quality_isbi.png`. The targets come from `python benchmarks/quality.py --target` "
             "(JetCar notebook headless with its defaults, EPOCHS=40).", "",
             table(rows, COLUMNS, markdown=True), ""]
    return "\n".join(lines + [_target_line(t) for t in targets])


def _target_line(t: dict) -> str:
    value = t["value"] if t["value"] is None else round(t["value"], 4)
    return f"- {t['name']}: {value} (target {t['target']}): {'met' if t['met'] else 'NOT met -- ' + str(t['why'])}"


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--target", action="store_true", help="run the issue's target check (about 30 min on 2 cores)")
    p.add_argument("--data", nargs="+", default=["camvid", "isbi"], choices=["camvid", "isbi"])
    p.add_argument("--camvid-budget", type=float, default=45.0, help="training seconds per CamVid contender")
    p.add_argument("--camvid-size", type=int, default=160, help="CamVid side length [px] (the issue's: 224)")
    p.add_argument("--isbi-budget", type=float, default=25.0, help="training seconds per ISBI contender")
    p.add_argument("--isbi-size", type=int, default=256, help="ISBI side length [px] of the plain loop and the fast "
                   "recipe (the study defaults train at 128)")
    p.add_argument("--camvid-epochs", type=int, default=40, help="--target: EPOCHS of the JetCar notebook")
    p.add_argument("--isbi-epochs", type=int, default=80, help="--target: epochs of the fast ISBI recipe")
    p.add_argument("--find-steps", type=int, default=None, help="LR finder steps (default the finder's 100)")
    p.add_argument("--limit", type=int, default=None, help="plain loops: first N images per split")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    p.add_argument("--docs", default=None, help="folder of the PNG curves (default docs/; none with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.camvid_budget, args.isbi_budget, args.camvid_size, args.isbi_size = 1.0, 1.0, 64, 64
        args.find_steps, args.isbi_epochs, args.camvid_epochs, args.limit = 6, 3, 2, args.limit or 8
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in (plain_loop.CAMVID, plain_loop.ISBI):
        if not path.exists():
            raise SystemExit(f"{path} is missing: this benchmark needs the real datasets in ../shared/data")
    print_machine()
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="seglib_quality_", dir=ROOT / "runs" if (ROOT / "runs").exists() else None))
    try:
        if args.target:
            rows, targets = run_target(args, tmp)
            name, out = "quality_target", args.out or RESULTS_DIR / "quality_target.json"
        else:
            rows = contenders(args, tmp)
            prev = RESULTS_DIR / "quality_target.json"
            kept = json.loads(prev.read_text()) if prev.exists() else {"quick": True}
            targets = kept["targets"] if not kept.get("quick") else [
                target("CamVid / ISBI quality targets", None, "mIoU >= 0.55 in 720 s; Dice >= 0.86", False,
                       "not measured: run python benchmarks/quality.py --target (about 30 min)")]
            name, out = NAME, args.out
            docs = Path(args.docs) if args.docs else (None if args.quick else ROOT / "docs")
            if docs is not None:
                for data in ("camvid", "isbi"):
                    plot(rows, data, docs / f"quality_{data}.png")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, COLUMNS))
    path = write_results(name, rows, targets, markdown(rows, targets, args), out=out, seconds=time.monotonic() - t0,
                         extra={"quick": bool(args.quick)})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
