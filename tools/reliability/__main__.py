"""``python -m tools.reliability`` (``make reliability``): kill-point campaign, endurance run, fast fault tests,
then ``RELIABILITY.md``; exit code 1 when any check failed.

Options: ``--n N`` kill points (default 90), ``--quick`` (9 kill points, 60 endurance epochs, no pytest),
``--seed``, ``--jobs`` (processes at a time, default 2), ``--root`` (work folder, never deleted; default a new
temporary one, deleted when everything passed; passed kill points are deleted, failed ones and the references
kept, unless ``--keep``), ``--no-endurance``,
``--no-pytest``, ``--report PATH`` (default ``RELIABILITY.md`` at the repository root; ``""``: none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAULT_TESTS = ["tests/test_faults.py", "tests/test_recovery.py", "tests/test_storage_faults.py",
               "tests/test_data_refusals.py", "tests/test_study_faults.py"]
"""The fast fault tests run by ``make reliability`` (those that exist)."""


def run_pytest(folder: Path) -> tuple[int, dict]:
    """Run the existing :data:`FAULT_TESTS`; ``(exit code, {file: {"tests", "failures", "errors", "skipped"}})``
    counted from pytest's JUnit XML."""
    files = [f for f in FAULT_TESTS if (ROOT / f).exists()]
    xml = folder / "junit.xml"
    rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files,
                          f"--junitxml={xml}"], cwd=ROOT)
    counts = {f: {"tests": 0, "failures": 0, "errors": 0, "skipped": 0} for f in files}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            module = case.get("classname", "").split(".")
            name = next((f for f in files if Path(f).stem in module), None)
            if name is None:
                continue
            c = counts[name]
            c["tests"] += 1
            for kind in ("failure", "error", "skipped"):
                if case.find(kind) is not None:
                    c[kind + ("s" if kind != "skipped" else "")] += 1
    return rc, counts


def run_endurance(folder: Path, epochs: int) -> dict:
    """The endurance run in its own process (:mod:`tools.reliability.endurance`)."""
    out = folder / "endurance.json"
    subprocess.call([sys.executable, "-m", "tools.reliability.endurance", "--epochs", str(epochs),
                     "--folder", str(folder / "endurance"), "--out", str(out)], cwd=ROOT)
    if not out.exists():
        return {"epochs": 0, "warmup": 0, "seconds": 0, "rss_start_kb": 0, "rss_end_kb": 0,
                "rss_slope_kb_per_epoch": None, "fds_start": 0, "fds_end": 0, "fds_max": 0,
                "fd_slope_per_epoch": None, "passed": False, "problems": ["the endurance run crashed"]}
    return json.loads(out.read_text())


def main(argv=None) -> int:
    """Run what the options ask for, write the report, return the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--root")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--no-endurance", action="store_true")
    p.add_argument("--no-pytest", action="store_true")
    p.add_argument("--endurance-epochs", type=int)
    p.add_argument("--report", default=str(ROOT / "RELIABILITY.md"))
    a = p.parse_args(argv)
    n = a.n if a.n is not None else 9 if a.quick else 90
    t0 = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["SEGLIB_ENV"] = "local"
    os.environ.setdefault("MPLBACKEND", "Agg")
    root = Path(a.root or tempfile.mkdtemp(prefix="seglib-reliability-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {root}", flush=True)

    from .runner import run_campaign

    campaign = run_campaign(root, n=n, seed=a.seed, jobs=a.jobs, log=lambda m: print(m, flush=True)) if n else None
    (root / "campaign.json").write_text(json.dumps(campaign, indent=1, default=str))
    endurance = None if a.no_endurance else run_endurance(root, a.endurance_epochs or (60 if a.quick else 300))
    rc_tests, counts = (0, None) if a.no_pytest or a.quick else run_pytest(root)
    failed = [] if campaign is None else [q["id"] for q in campaign["points"] if not q["passed"]]
    failed += [] if campaign is None else [f"profile {q['scenario']} {q['variant']}" for q in campaign["profiles"]
                                           if not q["passed"]]
    if endurance is not None and not endurance["passed"]:
        failed.append("endurance: " + "; ".join(endurance["problems"]))
    if rc_tests:
        failed.append(f"pytest exit code {rc_tests}")
    seconds = time.monotonic() - t0
    if a.report:
        from .report import write_report

        args = " ".join(argv if argv is not None else sys.argv[1:])
        write_report(Path(a.report), campaign, endurance, counts, {"argv": args, "seconds": seconds})
        print(f"wrote {a.report}")
    if not a.keep and not failed and a.root is None:  # a folder given with --root is never deleted
        shutil.rmtree(root, ignore_errors=True)
    elif not a.keep and campaign is not None:  # keep the failed kill points and the references
        for q in campaign["points"]:
            if q["passed"]:
                shutil.rmtree(root / q["id"], ignore_errors=True)
        for q in campaign["profiles"]:
            if q["passed"]:
                shutil.rmtree(root / f"profile-{q['scenario']}-{q['variant']}", ignore_errors=True)
    print(f"{len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; {seconds / 60:.1f} min"
          + (f"; failed kill points and the references kept in {root}" if failed and not a.keep else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
