"""``make bench``: run every benchmark script, each in its own process and time budget, then rewrite BENCHMARKS.md.

The scripts (:data:`BUDGETS`, in this order) write ``benchmarks/results/<name>.json``; a script that fails
or overruns its limit (twice its budget plus a minute; it is killed then) does not stop the others, but
makes this command exit 1 after :mod:`benchmarks.report` has rewritten ``BENCHMARKS.md`` from every results
file, naming the failed scripts. Results not rerun here (``gpu.json`` from a GPU machine, a long quality run)
are kept and shown with their own date and machine (a script that exits 0 without writing results, as
``gpu.py`` without a GPU, keeps its earlier file). The budgets add up to 27 minutes on a 2-core CPU; the
scripts' latest full runs took about 26 minutes in all.

``--quick`` runs every script with ``--quick`` (tiny settings, a smoke check) into a temporary folder and
prints where the report went; the committed results and BENCHMARKS.md are left alone. ``--only NAME ...``
runs some of the scripts (the report still shows every results file).

    python -m benchmarks.run_all [--quick] [--only overhead checkpoint]
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS_DIR, arg_parser  # noqa: E402
from benchmarks.report import write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"overhead": 250, "loader": 160, "checkpoint": 160, "resume": 90, "lr_tuning": 160, "quality": 390,
           "viewer": 75, "onnx": 120, "ddp": 200, "gpu": 30}
"""Script name -> its time budget in ``make bench`` [s] (1635 s, about 27 minutes, in all)."""


def run_script(name: str, out: Path, quick: bool, budget: float) -> tuple[bool, float, str]:
    """Run ``python -m benchmarks.<name> --out <out>`` (``--quick``); ``(ok, seconds, why)`` where ``why`` says
    what failed (exit status and the end of stderr, or the time limit)."""
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--out", str(out)] + (["--quick"] if quick else [])
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"),
               SEGLIB_ENV=os.environ.get("SEGLIB_ENV", "local"), MPLBACKEND=os.environ.get("MPLBACKEND", "Agg"))
    limit = 2 * budget + 60
    t0 = time.perf_counter()
    print(f"== {name} (budget {budget:.0f} s): {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return False, time.perf_counter() - t0, f"killed after {limit:.0f} s (budget {budget:.0f} s)"
    secs = time.perf_counter() - t0
    tail = "\n".join(err.strip().splitlines()[-15:])
    if proc.returncode:
        return False, secs, f"exit status {proc.returncode}:\n{tail}"
    if not out.is_file():  # e.g. gpu.py without a GPU: its earlier results (from a GPU machine) stay
        return True, secs, " (no results written; earlier results kept)"
    over = f" (over its budget of {budget:.0f} s)" if secs > budget else ""
    return True, secs, over


def main(argv=None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--only", nargs="+", choices=sorted(BUDGETS), help="run only these scripts")
    a = p.parse_args(argv)
    names = [n for n in BUDGETS if not a.only or n in a.only]
    since = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    results = Path(tempfile.mkdtemp(prefix="seglib-bench-")) if a.quick else RESULTS_DIR
    results.mkdir(parents=True, exist_ok=True)
    failed, t_all = [], time.perf_counter()
    for name in names:
        if not (ROOT / "benchmarks" / f"{name}.py").is_file():
            failed.append((name, f"benchmarks/{name}.py does not exist"))
            continue
        ok, secs, why = run_script(name, results / f"{name}.json", a.quick, BUDGETS[name])
        print(f"== {name}: {'ok' if ok else 'FAILED'} in {secs:.0f} s{why if ok else ''}", flush=True)
        if not ok:
            print(why, file=sys.stderr, flush=True)
            failed.append((name, why.splitlines()[0]))
    out = a.out or (results / "BENCHMARKS.md" if a.quick else ROOT / "BENCHMARKS.md")
    path = write_report(results, Path(out), since)
    print(f"== {len(names)} scripts in {time.perf_counter() - t_all:.0f} s; wrote {path}", flush=True)
    if failed:
        print("FAILED: " + "; ".join(f"{n} ({w})" for n, w in failed), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
