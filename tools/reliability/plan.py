"""The seeded kill points of a campaign, drawn from what uninterrupted *profile* runs measured.

A profile run is an uninterrupted run of one scenario and checkpoint variant that counts how often each kill
point (and ``torch.save``) is reached; a kill point is then "the n-th hit" with n drawn within that count, so
every kill lands. Variants (:data:`VARIANTS`): ``E`` checkpoints at epoch ends only (CHECKPOINT_MINUTES=1000;
the reference run), ``S`` after every optimizer step (0), ``M`` after every step into a mirrored WORKDIR
(local folder != WORKDIR, as on Colab), ``T`` every 0.18 s of training (time-based, timer kills only).

Kinds (:data:`KINDS`): ``step`` (SIGKILL after the process's N-th optimizer step), a name of
:data:`seglib.train.faults.POINTS` (``SEGLIB_FAULT_AT=<name>:<n>``; ``save.between`` only at epoch ends that
improve the best value: the window between the two checkpoint writes), ``torch.save`` (the n-th call writes half
a file, then SIGKILL), ``timer`` (SIGKILL from the parent after a seeded random time). Some kill points kill
the rerun too (double kills); some mirrored ones lose the local folder before the rerun (a new Colab VM).
"""

from __future__ import annotations

import random

from seglib.metrics import higher_is_better

from .scenarios import MONITOR, SCENARIOS, STEPS_PER_EPOCH, total_steps

VARIANTS = {"E": {"checkpoint_minutes": 1000.0, "mirrored": False},
            "S": {"checkpoint_minutes": 0.0, "mirrored": False},
            "M": {"checkpoint_minutes": 0.0, "mirrored": True},
            "T": {"checkpoint_minutes": 0.003, "mirrored": False}}
KINDS = ["save.between", "step", "timer", "torch.save", "mirror.mid_copy", "save.between",
         "atomic_save.before_replace", "save.begin", "save.end"]
"""One cycle of kinds; each scenario's kill points walk through it (2 of 9 in the window between the writes)."""


def improving_epochs(histories: list[list[dict]], monitor: str) -> list[int]:
    """Process-wide epoch numbers (1-based, trials one after another) whose value of ``monitor`` improved on
    the best so far of its run (the first epoch of a run always does)."""
    out, offset = [], 0
    sign = 1 if higher_is_better(monitor) else -1
    for history in histories:
        best = None
        for h in history:
            v = h[monitor]
            if best is None or sign * v > sign * best:
                best = v
                out.append(offset + h["epoch"])
        offset += len(history)
    return out


def draw_kill(kind: str, scenario: str, variant: str, counts: dict, improving: list[int], seconds: float,
              rng: random.Random, rerun: bool = False) -> dict | None:
    """One kill of ``kind`` as :class:`~tools.reliability.scenarios.Case` fields (or ``kill_after``), drawn
    with ``rng`` within the profile's ``counts`` (``rerun``: early in the process, so that it lands in a rerun
    that has less left to do). None when the variant never reaches that point."""
    spe = STEPS_PER_EPOCH[scenario]
    if kind == "step":
        return {"kill_at_step": rng.randint(1, spe if rerun else total_steps(scenario))}
    if kind == "timer":
        return {"kill_after": round(seconds * rng.uniform(0.1, 0.3 if rerun else 0.7), 2)}
    if kind == "save.between":
        epoch = rng.choice(improving[:1] if rerun else improving)
        return {"fault": f"save.between:{epoch * (spe if variant in 'SM' else 1)}"}
    hits = counts.get(kind, 0)
    if hits == 0:
        return None
    n = rng.randint(1, min(2, hits) if rerun else max(1, int(hits * (0.8 if kind == "mirror.mid_copy" else 1))))
    return {"kill_in_save": n} if kind == "torch.save" else {"fault": f"{kind}:{n}"}


def make_plan(n: int, profiles: dict, seed: int = 11, double_share: float = 0.25) -> list[dict]:
    """``n`` kill points over the three scenarios (round robin), each ``{"id", "scenario", "variant", "kind",
    "kills": [kill, ...], "vm_lost"}``.

    Args:
        profiles: ``{(scenario, variant): {"counts", "histories", "seconds"}}`` of the profile runs (variants E,
            S and M; timer kills are timed from S's run time).
        seed: the campaign's seed; double_share: share of kill points whose rerun is killed too.
    """
    rng = random.Random(seed)
    plan, next_kind = [], {s: SCENARIOS.index(s) for s in SCENARIOS}
    for i in range(n):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        kind = KINDS[next_kind[scenario] % len(KINDS)]
        next_kind[scenario] += 1
        variant = "M" if kind == "mirror.mid_copy" else "T" if kind == "timer" and rng.random() < 0.5 else \
            rng.choice("ES")
        prof = profiles[(scenario, variant if variant != "T" else "E")]
        improving = improving_epochs(prof["histories"], MONITOR[scenario])
        seconds = profiles[(scenario, "S")]["seconds"]  # a warm run (the reference also made the data)
        kills = [draw_kill(kind, scenario, variant, prof["counts"], improving, seconds, rng)]
        if kills[0] is None:
            continue
        if rng.random() < double_share:
            second = rng.choice(["step", "timer", "save.between", "save.begin"])
            kills.append(draw_kill(second, scenario, variant, prof["counts"], improving, seconds, rng, True))
        plan.append({"id": f"{i:03d}-{scenario}-{kind}-{variant}", "scenario": scenario, "variant": variant,
                     "kind": kind + (" x2" if len(kills) > 1 else ""), "kills": [k for k in kills if k],
                     "vm_lost": variant == "M" and rng.random() < 0.5})
    return plan

