"""The fault-injection harness of seglib (issue 11): real SIGKILLs of real training processes, checked against
uninterrupted runs, an endurance run, and the ``RELIABILITY.md`` report.

Modules:
    scenarios: the three notebooks' training paths (``jetcar``, ``depth``, ``trial``) as tiny runs in a child
        process, with the kill hooks (optimizer step, ``SEGLIB_FAULT_AT`` kill point, inside ``torch.save``).
    launcher: starts those children from a fork server (the imports are paid once), kills them from outside
        (timer kills) and reruns them until they finish.
    checks: checks (a)-(g) of one interrupted run against the uninterrupted reference.
    plan: the seeded list of kill points of a campaign.
    runner: runs a campaign (references, profiles, kill points, two at a time) and collects the results.
    endurance: 300 short epochs in one process; resident memory and open file handles per epoch.
    report: writes ``RELIABILITY.md`` from the results.

``python -m tools.reliability`` (``make reliability``) runs all of it; ``--quick`` / ``--n`` make it short.
"""
