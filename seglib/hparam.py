"""The hyperparameter study of seed 004 as one object: what ``notebooks/hyperparameter_study.ipynb`` calls.

``run = HParamRun(DATA, workdir=WORKDIR, invert_mask=..., ...)``, then ``run.prepare()`` (data and the fixed
train-pool / held-out validation split, read by the base spec's :class:`~seglib.tune.trial.BinaryTrial` that
the study composes; every trial is such an experiment in its own folder), ``run.lr_search(...)`` (both LR
procedures per optimizer, cached in ``WORKDIR/lr_search.json``), ``run.run_studies(STUDIES, storage=STORAGE)``
(Optuna-backed, resumable, several workers may share it), ``run.table(study)``, ``run.report(study)`` (table
and plots from :mod:`seglib.inspect.study_plots`), ``run.explorer()``, ``run.show_batch(n)`` and
``run.write_summary()``. :func:`smoke_settings` shrinks the notebook's settings for a SMOKE run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .config import config_label
from .data.datasets import BinaryDataset
from .data.transforms import denormalize
from .experiment import experiment_name
from .losses import build_loss
from .runtime import workspace
from .train.checkpoint import atomic_write_json
from .tune.journal_lease import LeaseGuard, hold_journal
from .tune.lr_search import SCORE_VERSION, Prober, decade_search, probe_score, suggest_lr
from .tune.specs import (  # noqa: F401  (the notebook imports them from here)
    BASE_SPEC,
    OPTIMIZER_NAMES,
    SMOKE_SETTINGS,
    get_grids,
    seed_lr,
    smoke_settings,
    spec_hash,
    spec_key,
)
from .tune.trial import BinaryTrial, data_id, execute, load_result
from .tune.worker import HEARTBEAT_S, STALE_AFTER_S, StudyPlan, StudyWorker, TrialPlan, open_storage

LR_FROM = ("decade", "range_test", "seed")
class HParamRun:
    """Seed 004's U-Net hyperparameter study on a binary dataset. It composes experiments: ``base_trial``
    (the base spec's :class:`~seglib.tune.trial.BinaryTrial` in ``WORKDIR/lr_search``) prepares the data and
    serves the LR probes; each trial of a study is a BinaryTrial of its own in ``WORKDIR/trials``.

    Args:
        data: ``DATA`` (``"synthetic"`` = seeded cell blobs, a ``pairs`` folder such as ISBI 2012, a zip ...).
        workdir / local: see :func:`seglib.runtime.workspace` (Drive on Colab).
        experiment: work-folder name when ``workdir`` is None.
        invert_mask: use ``1 - mask`` as the positive class (ISBI 2012: the membrane, stored as 0).
        width_divisor, batchnorm: U-Net width (4 = 16-32-64-128-256) and BatchNorm.
        img_size, batch_size, trial_epochs, patience: per-trial training (early stopping on val Dice).
        seed: seed of split, initial weights, batch order and augmentation (the same for every trial).
        val_fraction: held-out validation share when the data has no ``splits/`` files.
        base: overrides of :data:`seglib.tune.specs.BASE_SPEC` (e.g. ``{"loss": "bce"}``).
        smoke: a few images per split and at most 2 values per studied factor, the base value kept
            (:meth:`seglib.tune.specs.StudyGrid.smoke`): seconds-long CPU runs through every path.
        synthetic_kwargs: arguments of the blobs generator.
        checkpoint_minutes: mid-epoch checkpoint interval.
        device: ``"cpu"``/``"cuda"``.

    Raises:
        ValueError: unknown keys in ``base`` (the message lists the valid ones).
    """

    def __init__(self, data: str = "synthetic", *, workdir=None, local=None, experiment: str = "hparam_study",
                 invert_mask: bool = False, width_divisor: int = 4, batchnorm: bool = False, img_size: int = 128,
                 batch_size: int = 4, trial_epochs: int = 40, patience: int | None = 20, seed: int = 0,
                 val_fraction: float = 0.2, base: dict | None = None, smoke: bool = False,
                 synthetic_kwargs: dict | None = None, checkpoint_minutes: float = 5.0, device: str | None = None):
        bad = sorted(set(base or {}) - set(BASE_SPEC))
        if bad:
            raise ValueError(f"unknown BASE keys {bad}; valid: {sorted(BASE_SPEC)}")
        self.fixed = {"width_divisor": int(width_divisor), "batchnorm": bool(batchnorm), "img_size": int(img_size),
                      "batch_size": int(batch_size), "epochs": int(trial_epochs), "patience": patience,
                      "seed": int(seed), "invert": bool(invert_mask), "checkpoint_minutes": float(checkpoint_minutes)}
        self.base = {**BASE_SPEC, **(base or {})}
        lr0 = self.base["lr"] or seed_lr(self.base["optimizer"], self.base["loss"])
        self.ws = workspace(experiment_name(experiment, data), workdir, local)
        self.base_trial = BinaryTrial({**self.base, "lr": lr0, "train_fraction": 1.0, **self.fixed}, data=data,
                                      workdir=self.ws.workdir / "lr_search", local=self.ws.local / "lr_search",
                                      device=device, val_fraction=val_fraction, smoke=smoke,
                                      synthetic_kwargs=synthetic_kwargs)
        self.device, self.data, self.smoke = self.base_trial.device, self.base_trial.data, bool(smoke)
        self.data_id = ""
        self.lr_results, self.lr_rows, self.lr_from, self.plans, self.storage_desc = {}, [], "seed", [], ""

    # ------------------------------------------------------------------ data
    @property
    def splits(self) -> dict:
        """``{"train": pool, "val": held-out}`` samples (empty before :meth:`prepare`)."""
        return self.base_trial.splits

    def prepare(self) -> dict:
        """Read the data once for the whole study (:meth:`seglib.experiment.Experiment.prepare` of
        ``base_trial``: fetch, layout, smoke subset, binary-mask check, counts) and set ``data_id``
        (:func:`~seglib.tune.trial.data_id`, part of every spec hash).

        Raises:
            DataError: missing/unreadable files, masks that are not binary ({0, 1} or {0, 255}) or not of
                their image's size, too few images to split.
        """
        splits = self.base_trial.prepare()
        self.data_id = self.fixed["data"] = data_id(self.base_trial.root, splits)
        print(f"data id {self.data_id}; positive class = "
              f"{'mask value 0 (INVERT_MASK)' if self.fixed['invert'] else 'mask value 255/1'}")
        return splits

    def samples(self, split: str = "train", n: int = 6) -> dict:
        """The first ``n`` samples of ``split`` as the trials see them (resized, un-augmented, inverted if
        ``invert_mask``): ``{"images": uint8 S x S x 3, "masks": uint8 S x S in {0, 1}, "names"}``."""
        self._need_data()
        ds = BinaryDataset(self.splits[split][:n], self.fixed["img_size"], invert=self.fixed["invert"])
        items = [ds[i] for i in range(len(ds))]
        return {"images": [denormalize(i["input"]) for i in items],
                "masks": [i["target"].numpy().astype("uint8") for i in items],
                "names": [s.name for s in self.splits[split][:n]]}

    def show_batch(self, n: int = 8, split: str = "train", epoch: int | None = None):
        """``base_trial``'s :meth:`~seglib.experiment.Experiment.show_batch`: the base spec's batch (a Figure)."""
        return self.base_trial.show_batch(n, split, epoch)

    def _need_data(self) -> None:
        if not self.splits:
            raise RuntimeError("call prepare() first")

    # ------------------------------------------------------------------ LR search
    def _probe_data(self) -> tuple:
        """``(build_model, inputs float32 N x 3 x S x S, targets int64 N x S x S)``: the whole training pool,
        un-augmented, decoded once for the probes of every loss (the model does not depend on the loss)."""
        ds = self.base_trial.dataset("train", "none")
        items = [ds[i] for i in range(len(ds))]
        return self.base_trial.build_model, torch.stack([i["input"] for i in items]), torch.stack([i["target"] for i in items])

    def lr_search(self, optimizers=OPTIMIZER_NAMES, losses=None, probe_epochs: int = 3, range_steps: int = 100,
                  procedures=("decade", "range_test")) -> list[dict]:
        """Both LR procedures for every optimizer and loss, each probe from a fresh seeded model.

        Args:
            optimizers: names in :data:`seglib.train.optim.OPTIMIZERS`.
            losses: loss names (default: the base loss).
            probe_epochs: length of one decade-search probe in epochs over the whole training pool.
            range_steps: steps of the range test (at most; it stops when the loss diverges).
            procedures: which of ``"decade"``, ``"range_test"`` to run.

        Returns:
            One row per (loss, optimizer): ``decade_lr``, ``decade_probes``, ``decade_steps``,
            ``range_lr`` (suggestion), ``range_steepest``, ``range_steps``, ``seed_lr``; the full
            results stay in ``self.lr_results`` and ``WORKDIR/lr_search.json`` (reused on rerun).
        """
        self._need_data()
        losses = [self.base["loss"]] if losses is None else list(losses)
        settings = {k: self.fixed[k] for k in ("width_divisor", "batchnorm", "img_size", "batch_size", "seed",
                                               "invert", "data")}
        tag = spec_hash({**settings, "probe_epochs": probe_epochs, "range_steps": range_steps, "score": SCORE_VERSION})
        path = self.ws.workdir / "lr_search.json"
        cache = json.loads(path.read_text()) if path.exists() else {}
        store = cache.setdefault(tag, {"probes": {}, "range": {}})

        def save() -> None:
            atomic_write_json(path, cache)

        build_model, x, t = self._probe_data()
        rows = []
        for loss in losses:
            prober = Prober(build_model, x, t, build_loss(loss, 2), self.fixed["batch_size"], self.fixed["seed"],
                            self.device)
            for opt in optimizers:
                rows.append(self._search_one(prober, loss, opt, probe_epochs, range_steps, procedures, store, save))
        self.lr_rows = rows
        return rows

    def _search_one(self, prober: Prober, loss: str, opt: str, probe_epochs: int, range_steps: int, procedures,
                    store: dict, save) -> dict:
        """Both procedures for one (loss, optimizer); probes cached in ``store`` (saved after each)."""
        steps = probe_epochs * prober.steps_per_epoch
        row = {"loss": loss, "optimizer": opt, "seed_lr": seed_lr(opt, loss)}
        if "decade" in procedures:
            def score(lr: float) -> float:
                k = f"{loss}|{opt}|{lr:.6g}"
                if k not in store["probes"]:
                    store["probes"][k] = probe_score(prober.train(opt, lr, steps))
                    save()
                return store["probes"][k]

            res = decade_search(score, steps_per_probe=steps)
            self.lr_results[f"{loss}|{opt}|decade"] = res.to_dict()
            row.update(decade_lr=res.lr, decade_probes=len(res.probes), decade_steps=res.steps)
        if "range_test" in procedures:
            k = f"{loss}|{opt}"
            if k not in store["range"]:
                store["range"][k] = prober.range_test(opt, steps=range_steps).to_dict()
                save()
            rt = store["range"][k]
            rt["suggestion"], rt["steepest"], rt["lr_at_min"] = suggest_lr(rt["lrs"], rt["smoothed"])
            self.lr_results[f"{loss}|{opt}|range_test"] = rt
            row.update(range_lr=rt["suggestion"], range_steepest=rt["steepest"], range_steps=rt["steps"])
        print(f"LR search {loss} / {opt}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in row.items() if k not in ("loss", "optimizer")))
        return row

    def lrs(self, source: str = "decade", loss: str | None = None) -> dict[str, float]:
        """LR per optimizer for the studies: from ``"decade"`` or ``"range_test"`` results of ``loss``
        (default: the base loss if it was searched, else the first loss searched), falling back to seed
        004's table (``"seed"``) for optimizers not searched.

        Raises:
            ValueError: an unknown ``source``.
        """
        if source not in LR_FROM:
            raise ValueError(f"LR_FROM={source!r}; use one of {LR_FROM}")
        searched = list(dict.fromkeys(k.split("|")[0] for k in self.lr_results))
        loss = loss or (self.base["loss"] if self.base["loss"] in searched or not searched else searched[0])
        out = {}
        for opt in OPTIMIZER_NAMES:
            res = self.lr_results.get(f"{loss}|{opt}|{source}")
            out[opt] = float(res["lr"] if source == "decade" else res["suggestion"]) if res else seed_lr(opt, loss)
        self.lr_from = source
        return out

    # ------------------------------------------------------------------ studies
    def make_plans(self, studies="all", lrs: dict | None = None) -> list[StudyPlan]:
        """The :class:`StudyPlan` of each study in ``studies`` (names; KeyError lists valid ones); a smoke run
        cuts each grid (:meth:`~seglib.tune.specs.StudyGrid.smoke`)."""
        self._need_data()
        lrs = lrs or self.lrs(self.lr_from)
        plans = []
        for st in (g.smoke(self.base) if self.smoke else g for g in get_grids(studies)):
            trials = []
            for params in st.grid():
                spec = {**st.spec(params, self.base, lrs), **self.fixed}
                trials.append(TrialPlan(st.name, params, spec_key(st, params, spec), spec))
            digest = hashlib.sha1("".join(spec_hash(t.spec) for t in trials).encode()).hexdigest()[:8]
            plans.append(StudyPlan(st.name, f"{st.name}-{digest}", dict(st.space), trials))
        self.plans = plans
        return plans

    def trial_folder(self, study: str, key: str) -> Path:
        """``WORKDIR/trials/<study>/<key>``."""
        return self.ws.workdir / "trials" / study / key

    def trial(self, tp: TrialPlan) -> BinaryTrial:
        """The :class:`BinaryTrial` of a plan entry (its own folder under ``WORKDIR/trials``)."""
        return BinaryTrial(tp.spec, self.splits, data=self.data, workdir=self.trial_folder(tp.study, tp.key),
                           local=self.ws.local / "trials" / tp.study / tp.key, device=str(self.device))

    def run_studies(self, studies="all", storage=None, lrs: dict | None = None, pruner: str | None = None,
                    wait: bool = True, heartbeat: float = HEARTBEAT_S, stale_after: float = STALE_AFTER_S, poll: float = 5.0,
                    progress: bool = False, epoch_table: bool = True, bar: bool | None = None) -> dict:
        """Run (or resume, or join) the studies; returns ``{study: "done" | "busy"}``.

        Every trial trains in ``WORKDIR/trials/<study>/<key>``; finished ones are skipped, an interrupted
        one resumes from its checkpoint, and other processes using the same ``storage`` and parameters
        share the work (see :mod:`seglib.tune.worker` for the storage choice).

        Feedback: a line ``[study] trial k/N: <key> (...; best val Dice so far)`` per trial, one per epoch (``epoch_table``),
        a result line; ``bar``: a tqdm bar per study (:class:`~seglib.tune.worker.StudyWorker`); ``progress``: trainer bars.
        Raises :class:`~seglib.tune.journal_lease.JournalInUseError` when another machine holds a journal's lease.
        """
        plans = self.make_plans(studies, lrs)
        guard = LeaseGuard(hold_journal(storage, self.ws.workdir, heartbeat, stale_after))  # before the journal opens
        try:
            store, self.storage_desc = open_storage(storage, self.ws.workdir)
            print(f"studies: {', '.join(f'{p.name} ({len(p.trials)} trials)' for p in plans)}; storage: {self.storage_desc}")

            def run_trial(tp: TrialPlan, callbacks) -> dict:
                res = execute(self.trial(tp), study=tp.study, key=tp.key, params=tp.params,
                              callbacks=[*callbacks, guard], progress=progress, epoch_table=epoch_table)
                how = f"reused from {res['reused_study']}" if res.get("reused_from") else (
                    f"{res['epochs_completed']} epochs" + (f", resumed at {res['resumed_from']}" if res.get("resumed_from")
                                                           else ""))
                self.worker.log(f"    {tp.key}: val Dice {res['final']['val_fg_dice']:.4f} "
                                f"(best epoch {res['evaluated']['epoch']}; {how})")
                return res

            self.worker = StudyWorker(store, plans, run_trial, pruner=pruner, heartbeat=heartbeat,
                                      stale_after=stale_after, poll=poll, wait=wait, bar=bar)
            return self.worker.run()
        finally:
            guard.release()

    # ------------------------------------------------------------------ results
    def results(self, study: str | None = None) -> list[dict]:
        """Finished trial results (``result.json``) in plan order, of one study or all; missing ones skipped."""
        out = []
        for p in self.plans:
            if study is None or p.name == study:
                for tp in p.trials:
                    res = load_result(self.trial_folder(tp.study, tp.key))
                    if res is not None:
                        out.append(res)
        return out

    def table(self, study: str | None = None) -> list[dict]:
        """Seed 004's columns per trial: study, config, loss value, Dice, val loss, val Dice (best checkpoint;
        ``loss_value``/``train_fg_dice`` on the un-augmented training subset), val IoU, pixel AP, object AP@0.5, best
        epoch (of the ``best.pt`` scored, ``result["evaluated"]``), epochs run. Same seeds give the same numbers."""
        return self._rows(self.results(study))

    @staticmethod
    def _rows(results: list[dict]) -> list[dict]:
        rows = []
        for r in results:
            f = r["final"]
            rows.append({"study": r["study"], "config": config_label(r["key"]), **r["params"],
                         "lr": r["spec"]["lr"], "loss_value": f["train_loss"], "train_fg_dice": f["train_fg_dice"],
                         "val_loss": f["val_loss"], "val_fg_dice": f["val_fg_dice"], "val_fg_iou": f["val_fg_iou"],
                         "val_pixel_ap": f["val_pixel_ap"], "val_object_ap50": f.get("val_object_ap50"),
                         "best_epoch": r["evaluated"]["epoch"], "epochs": r["epochs_completed"], "state": r["state"]})
        return rows

    def best(self, results: list[dict] | None = None) -> dict | None:
        """The complete trial with the highest val Dice (ties: first in plan order) among ``results``
        (default :meth:`results`), or None."""
        res = [r for r in (self.results() if results is None else results) if r.get("state") == "complete"]
        return max(res, key=lambda r: r["final"]["val_fg_dice"]) if res else None

    def trained_folder(self, result: dict) -> Path:
        """Folder holding the checkpoints of ``result`` (the original trial for a reused one)."""
        if result.get("reused_from"):
            return self.trial_folder(result["reused_study"], result["reused_from"])
        return self.trial_folder(result["study"], result["key"])

    def predictions(self, result: dict, n: int = 4) -> dict:
        """Validation predictions of the checkpoint a trial was scored on (``evaluated``; :meth:`BinaryTrial.predict`)."""
        folder = self.trained_folder(result)
        trial = BinaryTrial(result["spec"], self.splits, data=self.data, workdir=folder, local=folder,
                            device=str(self.device))
        return trial.predict("val", n, Path(result["evaluated"]["file"]).stem)

    def top_predictions(self, study: str, top: int = 10, n: int = 3, results: list[dict] | None = None) -> dict:
        """``{config label: predictions(result, n)}`` of the ``top`` trials of ``study`` by val Dice, best
        first (``results``: that study's :meth:`results`, read if not given)."""
        results = self.results(study) if results is None else results
        best = sorted(results, key=lambda r: -r["final"]["val_fg_dice"])[:top]
        return {config_label(r["key"]): self.predictions(r, n) for r in best}

    def report(self, study: str, top: int = 10, n: int = 3) -> list:
        """What the notebook shows for one study, in order: the :meth:`table` as a
        :class:`~seglib.inspect.study_plots.Table`, val Dice per config, the training curves of every
        config, and ``n`` validation predictions of the ``top`` configs (matplotlib Figures); ``[]``
        while no trial of ``study`` has finished."""
        from .inspect.study_plots import Table, plot_config_predictions, plot_study_curves, plot_study_scores

        results = self.results(study)
        if not results:
            return []
        rows = self._rows(results)
        return [Table(rows, title=f"study {study}"), plot_study_scores(rows, f"{study}: val Dice per config"),
                plot_study_curves(results), plot_config_predictions(self.top_predictions(study, top, n, results), n)]

    def explorer(self, n: int = 4):
        """An ipywidgets :class:`~seglib.inspect.study_plots.StudyExplorer` over the finished trials."""
        from .inspect.study_plots import StudyExplorer

        return StudyExplorer(self, n)

    def summary(self) -> dict:
        """The common ``summary.json`` (``base_trial``'s: data, config, time) plus ``trials`` (every trial's
        config, scores, and ``best_epoch``/``scored_checkpoint``: the ``best.pt`` the scores come from), ``lr_search``
        and ``studies``; ``best`` names the best config, its val Dice and epoch, ``best_checkpoint`` that file."""
        out = self.base_trial.summary()
        results = self.results()
        b = self.best(results)
        trials = [{k: r.get(k) for k in ("study", "key", "params", "state", "epochs_completed", "reused_from")}
                  | {"best_epoch": r["evaluated"]["epoch"], "config": r["spec"], "scores": r["final"],
                     "scored_checkpoint": str(self.trained_folder(r) / r["evaluated"]["file"])} for r in results]
        out.update({
            "best": None if b is None else {"metric": "val_fg_dice", "value": b["final"]["val_fg_dice"],
                                            "epoch": b["evaluated"]["epoch"], "study": b["study"], "trial": b["key"],
                                            "config": b["spec"]},
            "final_metrics": b["final"] if b else {}, "epochs_completed": sum(r["epochs_completed"] for r in results
                                                                          if not r.get("reused_from")),
            "checkpoint": str(self.trained_folder(b) / "checkpoints" / "last.pt") if b else None,
            "best_checkpoint": str(self.trained_folder(b) / b["evaluated"]["file"]) if b else None,
            "tensorboard": str(self.ws.workdir / "trials"), "trials": trials,
            "lr_search": {"rows": self.lr_rows, "lr_from": self.lr_from},
            "studies": {p.name: p.optuna_name for p in self.plans}, "storage": self.storage_desc,
        })
        return out

    def write_summary(self) -> Path:
        """Write ``WORKDIR/summary.json`` atomically (strict JSON: NaN -> null) and return its path."""
        return atomic_write_json(self.ws.workdir / "summary.json", self.summary(), indent=2, strict=True)
