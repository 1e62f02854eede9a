"""Train a JetCar-style segmentation run or a depth + mask run from a shell, on one or several processes.

On several GPUs (or, for tests and measurements, several CPU processes)::

    torchrun --standalone --nproc-per-node=4 -m seglib.launch segmentation --data /data/jetcar.zip \\
        --workdir runs/jetcar --set epochs=40 batch_size=64
    python -m seglib.launch segmentation --devices auto ...      # the same, processes started from here

The configuration is the notebooks': the segmentation notebook's recipe (``--recipe``) with its U-Net/MobileNetV2, or
:func:`seglib.depthseg.depth_config`; ``--set KEY=VALUE`` changes any :class:`~seglib.config.TrainConfig` field (the
value read as JSON when it parses, else as a string). Run it again after an interruption: it resumes. Rank 0 alone
evaluates, exports the predictions and writes ``summary.json``; the last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import TrainConfig, smoke_config


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides(pairs: list[str]) -> dict:
    """``{"key": value}`` of ``KEY=VALUE`` strings (values read as JSON when they parse).

    Raises:
        ValueError: a pair without ``=``, or a key that is not a TrainConfig field (the message lists them).
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key.strip().lower() not in fields:
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        out[key.strip().lower()] = _value(text)
    return out


def build(args: argparse.Namespace):
    """The run (``SegmentationRun`` or ``DepthSegRun``) that ``args`` describe, not yet prepared."""
    if args.task == "segmentation":
        from .recipes import recipe_config
        from .segmentation import SegmentationRun

        cfg = TrainConfig(**recipe_config(args.recipe, epochs=None, img_size=224), experiment=args.experiment or "jetcar",
                          model="unet_mobilenet_v2")
        kind = SegmentationRun
    else:
        from .depthseg import DepthSegRun, depth_config

        cfg, kind = depth_config(args.experiment or "depthseg"), DepthSegRun
    cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides(args.set)})
    if args.smoke:
        cfg = smoke_config(cfg)
    synthetic = json.loads(args.synthetic) if args.synthetic else None
    return kind(cfg, args.data, workdir=args.workdir, smoke=args.smoke, synthetic_kwargs=synthetic,
                notebook=f"seglib.launch {args.task}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m seglib.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["segmentation", "depth"])
    p.add_argument("--data", default="synthetic", help="a DATA value as in the notebooks (default: synthetic)")
    p.add_argument("--workdir", default=None, help="results folder (default: runs/<experiment>)")
    p.add_argument("--experiment", default=None)
    p.add_argument("--recipe", default="fast", help="segmentation recipe (seglib.recipes.RECIPES)")
    p.add_argument("--devices", default="1", help="'auto' (all GPUs) or a number of processes; 1 inside torchrun")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig fields")
    p.add_argument("--synthetic", default=None, help="JSON of the synthetic generator's options")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and few images (seconds on a CPU)")
    p.add_argument("--no-export", action="store_true", help="skip evaluation, predictions and summary")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring); returns the exit status."""
    from .train.distributed import is_main_process, shutdown

    args = parse_args(argv)
    run = build(args)
    run.prepare()
    result = run.train(devices=args.devices, progress=False)  # "auto" or a number: resolve_devices reads both
    main_process = is_main_process()
    shutdown()  # torchrun: the process group is no longer needed; rank 0 goes on alone
    if not main_process:
        return 0
    out = {"epochs_completed": result.epochs_completed, "status": result.status, "resumed_from": result.resumed_from,
           "best": result.best, "workdir": str(run.ws.workdir)}
    if not args.no_export:
        out["final_metrics"] = {k: v for k, v in run.evaluate().items() if isinstance(v, (int, float))}
        out["predictions"] = str(run.export())
        out["summary"] = str(run.write_summary())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
