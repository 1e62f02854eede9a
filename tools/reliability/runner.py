"""A kill-point campaign: reference and profile runs, the seeded kill points, two processes at a time.

Layout under ``root``: ``cache/`` (synthetic data, ``$SEGLIB_CACHE``), ``ref-<scenario>/`` (the uninterrupted
reference, variant ``E``), ``profile-<scenario>-<variant>/`` (uninterrupted runs of the other variants, checked
against the reference too), ``<id>/`` per kill point (``w/`` WORKDIR, ``local/`` when mirrored, ``steps.jsonl``,
``output.txt``: every process's output). Each folder is kept for inspection.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .checks import check_case, read_log, run_folders
from .launcher import launch, run_until_finished
from .plan import VARIANTS, make_plan
from .scenarios import SCENARIOS, Case, case_dict


def case_for(folder: Path, scenario: str, variant: str, count: bool = False) -> Case:
    """A fresh :class:`Case` of ``scenario`` in variant ``variant`` (:data:`~tools.reliability.plan.VARIANTS`)
    under ``folder`` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    v = VARIANTS[variant]
    return Case(scenario, str(folder / "w"), str(folder / "local") if v["mirrored"] else None,
                v["checkpoint_minutes"], count=count)


def _histories(case: Case) -> list[list[dict]]:
    """The per-run histories of an uninterrupted run, in the order the process trained them."""
    order = list(dict.fromkeys(e["run"] for e in read_log(case.log)))
    out = []
    for run in order:
        result = Path(run) / "result.json"
        if result.exists():
            out.append(json.loads(result.read_text())["history"])
        else:
            import torch

            out.append(torch.load(Path(run) / "checkpoints" / "last.pt", weights_only=True)["history"])
    return out


def profile(folder: Path, scenario: str, variant: str) -> dict:
    """Run an uninterrupted, counting run; ``{"case", "run", "counts", "histories", "seconds"}``.

    Raises:
        RuntimeError: the run failed (its output is named).
    """
    case = case_for(folder, scenario, variant, count=True)
    run = launch(case)
    if run["rc"] != 0:
        raise RuntimeError(f"the uninterrupted {scenario} run ({variant}) failed with exit code {run['rc']}; "
                           f"see {case.output}")
    counts = json.loads((folder / "counts.json").read_text())
    return {"case": case, "run": run, "counts": counts, "histories": _histories(case), "seconds": run["seconds"]}


def execute_point(point: dict, root: Path, refs: dict) -> dict:
    """Run one kill point of the plan (kill, reruns until finished) and check it against its reference."""
    folder = root / point["id"]
    case = case_for(folder, point["scenario"], point["variant"])
    between = (lambda i: shutil.rmtree(case.local, ignore_errors=True)) if point["vm_lost"] else None
    runs = run_until_finished(case, point["kills"], between=between)
    res = check_case(point["scenario"], case.workdir, refs[point["scenario"]], runs, case.log,
                     case.checkpoint_minutes, case.local)
    landed = sum(r["rc"] == -9 for r in runs)
    failed = {k: v for k, v in res["checks"].items() if v}
    return {**point, "case": case_dict(case), "runs": runs, **res, "landed": landed,
            "passed": not failed, "failed": sorted(failed)}


def run_campaign(root: Path, n: int = 90, seed: int = 11, jobs: int = 2, log=print) -> dict:
    """References, profiles and ``n`` seeded kill points; returns everything the report needs.

    Returns:
        ``{"references": {scenario: seconds}, "profiles": [check of each profile run], "points": [result of
        :func:`execute_point`], "seconds"}``.
    """
    t0 = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["SEGLIB_CACHE"] = str(root / "cache")
    pool = ThreadPoolExecutor(max_workers=jobs)
    profiles = dict(zip([(s, "E") for s in SCENARIOS],
                        pool.map(lambda s: profile(root / f"ref-{s}", s, "E"), SCENARIOS)))
    refs = {s: profiles[(s, "E")]["case"].workdir for s in SCENARIOS}
    log("references: " + ", ".join(f"{s} {profiles[(s, 'E')]['seconds']:.1f} s" for s in SCENARIOS))
    others = [(s, v) for s in SCENARIOS for v in ("S", "M")]
    profiles.update(zip(others, pool.map(lambda sv: profile(root / f"profile-{sv[0]}-{sv[1]}", *sv), others)))
    checked = []
    for (s, v), p in profiles.items():
        if v != "E":
            res = check_case(s, p["case"].workdir, refs[s], [p["run"]], p["case"].log, p["case"].checkpoint_minutes,
                             p["case"].local)
            checked.append({"scenario": s, "variant": v, "counts": p["counts"], **res,
                            "passed": not any(res["checks"].values())})
    plan = make_plan(n, profiles, seed)
    log(f"profiles checked; {len(plan)} kill points planned")
    points = []

    def one(point):
        res = execute_point(point, root, refs)
        points.append(res)
        log(f"[{len(points):3d}/{len(plan)}] {res['id']}: {'pass' if res['passed'] else 'FAIL ' + ','.join(res['failed'])}"
            f" ({len(res['runs'])} runs, {res['landed']} killed)")
        return res

    ordered = list(pool.map(one, plan))
    pool.shutdown()
    return {"references": {s: profiles[(s, "E")]["seconds"] for s in SCENARIOS},
            "folders": {s: run_folders(refs[s]) for s in SCENARIOS},
            "profiles": checked, "points": ordered, "seconds": time.monotonic() - t0, "seed": seed}
