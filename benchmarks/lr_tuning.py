"""Tuning cost on ISBI 2012: the seed's LR search against the LR range test, in optimizer steps and in what the
chosen LR then reaches.

Both procedures run as the study notebook's ``LR_SEARCH`` runs them (:meth:`seglib.hparam.HParamRun.lr_search`:
every probe a fresh seeded model on the whole un-augmented training pool, :class:`seglib.tune.lr_search.Prober`):
(a) seed 004's decade search (:func:`seglib.tune.lr_search.decade_search`: one ``PROBE_EPOCHS`` training per
decade 1e-5 ... 1e0, then a binary search on the leading digit) and (b) the LR range test (one training with an
exponentially growing LR, suggestion = LR at the loss minimum / 10). Each chosen LR (and seed 004's table value,
no search) then trains the study's base trial for the same number of epochs; the row gives the search's steps and
seconds and the best val Dice. Study notebook defaults: 128 px, U-Net 16-256 without BatchNorm, batch 4, Adam,
BCE + switching loss, 3 probe epochs, 100 range-test steps.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arg_parser, emit, print_machine, table, write_results  # noqa: E402
from benchmarks.plain_loop import ISBI  # noqa: E402

NAME = "lr_tuning"
COLUMNS = ["procedure", "lr", "search_steps", "search_seconds", "train_epochs", "best_val_dice", "last_val_dice"]


def search(run, procedure: str, optimizer: str, loss: str, probe_epochs: int, range_steps: int) -> dict:
    """One LR procedure (``"decade"`` or ``"range_test"``) of ``run`` (a prepared :class:`~seglib.hparam.HParamRun`):
    ``{"procedure", "lr", "search_steps", "search_seconds"}``."""
    t0 = time.perf_counter()
    (row,) = run.lr_search([optimizer], [loss], probe_epochs=probe_epochs, range_steps=range_steps,
                           procedures=(procedure,))
    seconds = time.perf_counter() - t0
    key = "decade" if procedure == "decade" else "range"
    return {"procedure": procedure, "lr": float(row[f"{key}_lr"]), "search_steps": int(row[f"{key}_steps"]),
            "search_seconds": round(seconds, 1)}


def train(run, lr: float, workdir: Path) -> dict:
    """The study's base trial at ``lr`` for ``run``'s trial epochs: ``{"best_val_dice", "last_val_dice",
    "train_seconds"}`` (best over the epochs, as the study ranks trials)."""
    from seglib.tune.trial import BinaryTrial

    trial = BinaryTrial({**run.base, "lr": float(lr), "train_fraction": 1.0, **run.fixed}, run.splits, data=run.data,
                        workdir=workdir, local=workdir, device=str(run.device))
    trainer = trial.trainer(progress=False)
    trainer.fit()
    dice = [h["val_fg_dice"] for h in trainer.history]
    return {"best_val_dice": max(dice), "last_val_dice": dice[-1],
            "train_seconds": round(sum(h["train_seconds"] for h in trainer.history), 1)}


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--width-divisor", type=int, default=4)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--loss", default="bce_switching", help="the study's base loss")
    p.add_argument("--probe-epochs", type=int, default=3)
    p.add_argument("--range-steps", type=int, default=100)
    p.add_argument("--train-epochs", type=int, default=10, help="epochs of the training with each chosen LR")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    args = p.parse_args(argv)
    smoke = bool(args.quick)
    if smoke:
        args.img_size, args.probe_epochs, args.range_steps, args.train_epochs = 64, 1, 20, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if not ISBI.exists():
        raise SystemExit(f"{ISBI} is missing: this benchmark needs ISBI 2012 in ../shared/data")
    from seglib.hparam import HParamRun
    from seglib.tune.specs import seed_lr

    print_machine()
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="seglib_lr_tuning_"))
    try:
        run = HParamRun(str(ISBI), workdir=tmp / "study", invert_mask=True, width_divisor=args.width_divisor,
                        img_size=args.img_size, trial_epochs=args.train_epochs, patience=None, smoke=smoke,
                        base={"optimizer": args.optimizer, "loss": args.loss})
        run.prepare()
        rows = [search(run, proc, args.optimizer, args.loss, args.probe_epochs, args.range_steps)
                for proc in ("decade", "range_test")]
        rows.append({"procedure": "seed table (no search)", "lr": seed_lr(args.optimizer, args.loss), "search_steps": 0,
                     "search_seconds": 0.0})
        for row in rows:
            row.update(train(run, row["lr"], tmp / f"train_{row['procedure'].split()[0]}"),
                       train_epochs=args.train_epochs)
            emit(NAME, **row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, COLUMNS))
    dec, rng = rows[0], rows[1]
    ratio = dec["search_steps"] / max(1, rng["search_steps"])
    targets: list[dict] = []  # the issue sets no target for the tuning cost: figures only
    md = "\n".join([
        "### Tuning cost: seed 004's LR search against the LR range test (ISBI 2012)", "",
        f"Both procedures as the study notebook's LR_SEARCH runs them (fresh seeded model per probe, whole "
        f"un-augmented training pool), {args.optimizer} with the {args.loss} loss, {args.img_size} px, U-Net width "
        f"divisor {args.width_divisor}, {args.probe_epochs} epochs per decade-search probe, at most "
        f"{args.range_steps} range-test steps. Each chosen LR then trains the study's base trial for "
        f"{args.train_epochs} epochs (best val Dice over them). Steps are optimizer steps.", "",
        table(rows, COLUMNS, markdown=True), "",
        f"The decade search took {ratio:.1f}x the range test's optimizer steps; the range test's LR reached a best val "
        f"Dice {rng['best_val_dice'] - dec['best_val_dice']:+.4f} against the decade search's. No target (issue item 6)."])
    path = write_results(NAME, rows, targets, md, out=args.out, seconds=time.monotonic() - t0,
                         extra={"quick": smoke})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
