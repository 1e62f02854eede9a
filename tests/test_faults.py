"""Fast fault injection (issue 11): real SIGKILLs of two notebooks' training paths at 11 kill points, each rerun
until it finishes and checked against an uninterrupted run (tools/reliability/checks.py: a resumes and
finishes, b final weights bit-equal, c best.pt and summary consistent, d repeated work, e TensorBoard steps,
f study table, g no temporary files), and a crafted pickle that must not run. ``make reliability`` runs the
full, seeded campaign (>= 50 kill points, endurance).

The runs are children of a fork server (imports paid once), two at a time, all started by the module fixture;
each test then reads its kill point's result.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.reliability.checks import CHECKS  # noqa: E402
from tools.reliability.launcher import launch  # noqa: E402
from tools.reliability.plan import improving_epochs  # noqa: E402
from tools.reliability.runner import case_for, execute_point, profile  # noqa: E402
from tools.reliability.scenarios import MONITOR  # noqa: E402

FAST = ("depth", "trial")
"""The scenarios of the fast subset: the depth and study paths write small checkpoints (JetCar's 100 MB
``last.pt`` is left to ``make reliability``)."""


def kill_points(profiles) -> list[dict]:
    """The fast subset: every kill kind, two kills in the window between the two checkpoint writes (at improving
    epochs), one inside torch.save, one before os.replace, one mid-copy to a mirrored WORKDIR (new VM)."""
    depth = improving_epochs(profiles["depth"]["histories"], MONITOR["depth"])
    trial = improving_epochs(profiles["trial"]["histories"], MONITOR["trial"])
    points = [
        ("depth", "E", [{"fault": f"save.between:{depth[-1]}"}], False),  # the last improving epoch: the best
        ("trial", "E", [{"fault": f"save.between:{next(e for e in trial if e > 3)}"}], False),  # 2nd trial
        ("depth", "S", [{"kill_in_save": 5}], False),  # saves: last@1.1, last@1, best@1, last@2.1, last@2 (torn)
        ("depth", "E", [{"fault": "atomic_save.before_replace:2"}], False),  # best.pt@1 complete, not renamed
        ("depth", "S", [{"fault": "atomic_save.before_replace:2"}], False),  # last.pt@1: last.prev.pt linked
        ("depth", "M", [{"fault": "mirror.mid_copy:3"}], True),  # the local folder is lost too (new VM)
        ("depth", "S", [{"kill_at_step": 3}], False),
        ("depth", "E", [{"fault": "save.begin:2"}], False),
        ("depth", "S", [{"fault": "save.end:3"}], False),
        ("depth", "S", [{"kill_at_step": 4}, {"fault": "save.between:1"}], False),  # double kill
        ("trial", "S", [{"kill_at_step": 8}], False),  # mid-epoch in the 2nd trial
    ]
    return [{"id": f"{i:02d}-{s}-{v}-{'+'.join(next(iter(k)) for k in kills)}", "scenario": s, "variant": v,
             "kind": "", "kills": kills, "vm_lost": lost} for i, (s, v, kills, lost) in enumerate(points)]


CRAFTED = "crafted-pickle"


def crafted_pickle(root: Path) -> dict:
    """A run whose last.pt would run code when unpickled: it must refuse, name the file and run nothing."""
    case = case_for(root / CRAFTED, "depth", "E")
    marker = root / CRAFTED / "code-ran"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    last = Path(case.workdir) / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    torch.save({"model": Payload(), "epoch": 1}, last)  # a real checkpoint zip whose data.pkl calls exec
    before = last.read_bytes()
    run = launch(case)
    return {"run": run, "marker": marker.exists(), "output": Path(case.output).read_text(), "path": str(last),
            "unchanged": last.read_bytes() == before}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    with ThreadPoolExecutor(2) as pool:
        profiles = dict(zip(FAST, pool.map(lambda s: profile(root / f"ref-{s}", s, "E"), FAST)))
        refs = {s: p["case"].workdir for s, p in profiles.items()}
        points = kill_points(profiles)
        crafted = pool.submit(crafted_pickle, root)
        done = list(pool.map(lambda p: execute_point(p, root, refs), points))
        return {"points": {p["id"]: p for p in done}, "crafted": crafted.result(), "ids": [p["id"] for p in points]}


@pytest.mark.parametrize("index", range(11))
def test_kill_point_resumes_to_the_uninterrupted_result(results, index):
    res = results["points"][results["ids"][index]]
    assert res["landed"] == len(res["kills"]), f"{res['id']}: {res['landed']} of {len(res['kills'])} kills landed"
    problems = {f"({k}) {CHECKS[k]}": v for k, v in res["checks"].items() if v}
    assert not problems, f"{res['id']} {res['kills']}: {problems}; see {res['case']['output']}"
    assert res["runs"][-1]["rc"] == 0 and len(res["runs"]) == len(res["kills"]) + 1


def test_crafted_pickle_in_last_pt_is_refused_and_never_run(results):
    c = results["crafted"]
    assert not c["marker"], "unpickling last.pt ran the code it carried"
    assert c["run"]["rc"] not in (0, -9), "a last.pt that cannot be loaded safely was not refused"
    assert c["path"] in c["output"], f"the refusal does not name {c['path']}:\n{c['output'][-2000:]}"
    assert c["unchanged"], "the crafted last.pt was overwritten (it is the user's file: never silently replaced)"
    assert os.path.basename(c["path"]) == "last.pt"
