"""Data-parallel training on one machine: ``torch.distributed`` with DistributedDataParallel (DDP).

``DEVICES`` (:func:`resolve_devices`) processes each train on their share of every global batch: ``BATCH_SIZE`` is
the effective (global) batch, each of N processes takes ``BATCH_SIZE / N`` of it (the
:class:`~seglib.data.datasets.EpochSampler` splits every batch of the one ``(seed, epoch)`` permutation), DDP averages
the gradients, so one optimizer step sees the same samples as a single process with ``BATCH_SIZE`` and the LR needs
no change when ``DEVICES`` changes (the linear scaling rule of Goyal et al. 2017, "Accurate, Large Minibatch SGD",
applies only when ``BATCH_SIZE`` itself grows). Processes are started from a notebook by :func:`launch`
(``fork``, or ``spawn`` once CUDA is in use) or by ``torchrun`` (:func:`init_from_env`).

Rank 0 alone restores (then sends the restored state to the others), writes checkpoints, TensorBoard, history and
summaries; every rank's RNG state, loss accumulator and sampler position are gathered into ``last.pt``
(``"ranks"``), so a run killed on N processes resumes on N processes at the same batch with the same random streams.
Validation runs on every rank over the whole split (identical models, so identical metrics, and no metric needs a
reduction). On CUDA the backend is NCCL and BatchNorm becomes SyncBatchNorm; on a CPU, gloo, and BatchNorm keeps
per-process batch statistics (SyncBatchNorm is CUDA-only). What is exact across world sizes: ``docs/scaling.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import rng_state, set_rng_state, snapshot


@dataclass(frozen=True)
class DistContext:
    """This process's place in the process group: ``rank`` (0 writes), ``world_size``, ``local_rank`` (the GPU it
    uses on CUDA), ``backend`` (``"nccl"`` or ``"gloo"``), ``device`` and ``objects`` (a gloo group for Python
    objects: RNG states, the restored checkpoint)."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    objects: object

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0


_CTX: DistContext | None = None


def current() -> DistContext | None:
    """The :class:`DistContext` of this process while it is in a process group of more than one, else None."""
    return _CTX if _CTX is not None and dist.is_initialized() else None


def is_main_process() -> bool:
    """True outside data-parallel training and on rank 0 (guard evaluation and export in a ``torchrun`` script)."""
    ctx = current()
    return ctx is None or ctx.is_main


def resolve_devices(devices, device: torch.device) -> int:
    """The number of processes for ``DEVICES``.

    Args:
        devices: ``"auto"`` (every visible GPU on CUDA, else 1), or an int >= 1 (on a CPU: that many gloo
            processes, for tests and measurements).
        device: the run's device (``torch.device``).

    Raises:
        ValueError: anything else, or more GPUs than are visible (names how many are).
    """
    cuda = device.type == "cuda"
    if devices in (None, "auto"):
        return max(1, torch.cuda.device_count()) if cuda else 1
    try:
        n = int(devices)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(devices, bool):
        raise ValueError(f"DEVICES={devices!r}: use 'auto' (all visible GPUs) or a number of processes >= 1")
    if cuda and n > torch.cuda.device_count():
        raise ValueError(f"DEVICES={n} but {torch.cuda.device_count()} GPU(s) are visible; use 'auto' or at most that")
    return n


def plan(n: int, batch_size: int, lr: float, device: torch.device) -> str:
    """The line printed before data-parallel training: processes, per-process and effective batch, the LR rule.

    Raises:
        ValueError: ``batch_size`` is not divisible by ``n`` (names both and the nearest valid sizes).
    """
    if batch_size % n:
        lo, hi = max(n, batch_size // n * n), (batch_size // n + 1) * n
        raise ValueError(f"BATCH_SIZE={batch_size} is the effective (global) batch and must be divisible by the {n} "
                         f"processes of DEVICES; use {lo} or {hi}")
    backend = "NCCL, one GPU each" if device.type == "cuda" else "gloo on the CPU"
    return (f"data-parallel: {n} processes ({backend}) x {batch_size // n} images = effective batch {batch_size} "
            f"(BATCH_SIZE); LR {lr:.3g} as configured: the same global batch needs no LR change when DEVICES "
            f"changes (to grow BATCH_SIZE k-fold, scale LR by k with a warm-up: linear scaling rule, Goyal et al. 2017)")


def init_from_env() -> DistContext | None:
    """Join the process group that ``torchrun`` (or :func:`launch`) describes in ``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; None when ``WORLD_SIZE`` is unset or 1. NCCL with one GPU
    per process when CUDA is available (``SEGLIB_DDP_BACKEND`` overrides), else gloo; CPU processes get an equal
    share of the cores as torch threads."""
    global _CTX
    if current() is not None:
        return _CTX
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    backend = os.environ.get("SEGLIB_DDP_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30))
    objects = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
    _CTX = DistContext(rank, world, local, backend, device, objects)
    return _CTX


@contextlib.contextmanager
def rank0_first():
    """Inside ``torchrun``: rank 0 runs the block first (fetching and unpacking data, writing caches), the others
    after it; elsewhere the block just runs."""
    ctx = init_from_env()
    if ctx is not None and not ctx.is_main:
        dist.barrier(group=ctx.objects)
    yield
    if ctx is not None and ctx.is_main:
        dist.barrier(group=ctx.objects)


def shutdown() -> None:
    """Leave the process group (the end of a launched process)."""
    global _CTX
    _CTX = None
    if dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- the model and the epoch
def wrap(model: nn.Module, ctx: DistContext | None, find_unused: bool = False) -> nn.Module:
    """``model`` itself without a process group, else DDP around it (SyncBatchNorm first on CUDA). The wrapper
    trains; checkpoints hold the unwrapped ``model``'s state_dict, so they load with or without DDP."""
    if ctx is None:
        return model
    if ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def agree(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (the decision to write a mid-epoch checkpoint, which all ranks join)."""
    t = torch.tensor([int(flag)], dtype=torch.int32)
    dist.broadcast(t, 0, group=ctx.objects)
    return bool(t.item())


def end_train_part(ctx: DistContext, model: nn.Module, loss_mean) -> None:
    """After an epoch's training batches: every rank takes rank 0's buffers (BatchNorm running statistics, which
    each rank updated from its own samples) and the epoch loss sums of all ranks (``loss_mean.sum``/``weight``)."""
    for b in model.buffers():
        dist.broadcast(b.data, 0)
    for t in (loss_mean.sum, loss_mean.weight):
        dist.all_reduce(t)


def broadcast_object(ctx: DistContext, obj=None):
    """Rank 0's ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, 0, group=ctx.objects)
    return box[0]


def gather_ranks(ctx: DistContext, state) -> list[dict] | None:
    """Every rank's ``{"rank", "rng", "train_acc", "sampler"}`` (rank order) on rank 0, None on the others
    (``state``: this process's :class:`~seglib.train.state.TrainingState`). ``sampler`` is ``{"epoch", "batch",
    "world_size"}``: the epoch to train next and the global batches already done in it (the sampler is a function of
    these, the seed and the rank)."""
    mine = {"rank": ctx.rank, "rng": rng_state(), "train_acc": state.train_mean.state_dict(),
            "sampler": {"epoch": state.epoch + 1, "batch": state.batch, "world_size": ctx.world_size}}
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(mine, out, dst=0, group=ctx.objects)
    return out


def add_ranks(state: dict, ranks: list[dict]) -> dict:
    """``state`` (rank 0's checkpoint dict) with ``"ranks"`` and ``"train_acc"`` the sum over ranks (what a single
    process resuming it continues from)."""
    state["ranks"] = ranks
    state["world_size"] = len(ranks)
    state["train_acc"] = {k: sum(r["train_acc"][k] for r in ranks) for k in ("loss_sum", "seen")}
    return state


def restore(state, restore_rank0):
    """:meth:`~seglib.train.state.TrainingState.restore` in a process group: rank 0 runs ``restore_rank0(state)``
    (the recovery order, files, messages) and sends the restored state (or its error) to the others; then each rank
    takes its own RNG state and loss sums from the checkpoint's ``"ranks"`` when it was written by as many
    processes, else (fresh start, another world size) ranks > 0 seed with ``seed + rank`` and start their sums at 0.

    Raises:
        whatever rank 0's restore raises (ranks > 0: RuntimeError naming it).
    """
    from ..runtime import seed_everything

    ctx, ckpt, payload = state.dist, None, None
    if ctx.is_main:
        try:
            ckpt = restore_rank0(state)
        except BaseException as err:
            broadcast_object(ctx, {"error": f"{type(err).__name__}: {err}"})
            raise
        payload = {"state": snapshot(state.state_dict()), "status": state.status, "resumed_from": state.resumed_from,
                   "fine_tuned_from": state.fine_tuned_from,
                   "ranks": (ckpt or {}).get("ranks"), "world_size": (ckpt or {}).get("world_size", 1)}
    payload = broadcast_object(ctx, payload)
    if "error" in payload:
        raise RuntimeError(f"rank 0 could not restore the run: {payload['error']}")
    if not ctx.is_main:
        state.load_state_dict(payload["state"])
        state.status, state.resumed_from = payload["status"], payload["resumed_from"]
        state.fine_tuned_from = payload["fine_tuned_from"]
    ranks = payload["ranks"]
    if ranks and len(ranks) == ctx.world_size:
        set_rng_state(ranks[ctx.rank]["rng"])
        state.train_mean.load_state_dict(ranks[ctx.rank]["train_acc"])
        return ckpt
    if not ctx.is_main:
        state.train_mean.reset()
        seed_everything(state.cfg.seed + ctx.rank if payload["status"] == "fresh" else
                        state.cfg.seed + 1000 * ctx.rank + state.step)
    else:
        say_world_change(payload["world_size"], ctx.world_size, payload["status"])
    return ckpt


def say_world_change(written: int, now: int, status: str) -> None:
    """Print, for a run ``status`` ``"resumed"`` on ``now`` processes from a checkpoint ``written`` by another
    number, what carries over exactly and what does not."""
    if status == "resumed" and int(written or 1) != now:
        print(f"  the checkpoint was written by {written} process(es), resumed on {now}: same batch and global batch; "
              "the random streams of processes other than rank 0 start anew, so the result is not bit-equal to an "
              "uninterrupted run")


# ---------------------------------------------------------------------------- starting processes
def fit_parallel(run, devices, engine: str, *args):
    """:meth:`seglib.experiment.Experiment.train`'s data-parallel part: with ``DEVICES`` resolving to N > 1 outside a
    process group, print :func:`plan` and return rank 0's FitResult of ``run.trainer(*args).fit()`` in N launched
    processes; inside ``torchrun`` print the plan (rank 0) and return None (this process trains its share); else None.

    Raises:
        ValueError: see :func:`resolve_devices` and :func:`plan`; data-parallel training with ``engine`` other than
            ``"seglib"``.
    """
    n = resolve_devices(devices, run.device)
    ctx = current() or init_from_env()
    if (n > 1 or ctx) and engine != "seglib":
        raise ValueError(f"DEVICES={devices!r}: data-parallel training needs ENGINE='seglib' (got {engine!r}); set "
                         "DEVICES=1 for the Catalyst engine")
    if ctx is None and n > 1:
        print(plan(n, run.cfg.batch_size, run.cfg.lr, run.device))
        return launch(_fit, n, run, *args, backend="nccl" if run.device.type == "cuda" else "gloo")
    if ctx is not None and ctx.is_main:
        print(plan(ctx.world_size, run.cfg.batch_size, run.cfg.lr, ctx.device))
    return None


def _fit(run, *args):
    return run.trainer(*args).fit()



def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, world: int, port: int, folder: str, fn, args, backend: str | None) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), **({"SEGLIB_DDP_BACKEND": backend} if backend else {}))
    if rank > 0:
        warnings.simplefilter("ignore", UserWarning)  # rank 0 shows the same ones (e.g. no pretrained weights)
    try:
        init_from_env()
        result = fn(*args)
        if rank == 0:
            Path(folder, "result.pkl").write_bytes(pickle.dumps(result))
    except BaseException as err:
        text = RuntimeError(f"{type(err).__name__}: {err}")
        try:
            data = pickle.dumps(err)
            pickle.loads(data)  # an exception class whose arguments do not come back is sent as its text
        except Exception:  # noqa: BLE001
            data = pickle.dumps(text)
        Path(folder, f"error{rank}.pkl").write_bytes(data)
        raise
    finally:
        shutdown()


def launch(fn, n: int, *args, start_method: str | None = None, backend: str | None = None):
    """Run ``fn(*args)`` in ``n`` processes on this machine as one process group; return rank 0's return value.

    The processes are started with ``fork`` (they inherit the caller's objects: a notebook's run, its data and RAM
    caches), or with ``spawn`` once CUDA is in use in this process (a forked process cannot use it: the LR finder
    ran on the GPU, say); then ``fn`` and ``args`` are pickled and seglib is imported anew in each process. A process
    that raises or dies ends them all (``torch.multiprocessing.start_processes``); rank 0's exception is raised
    here (else the first one's).

    Args:
        start_method: ``"fork"`` or ``"spawn"``; None: as above.
        backend: ``"nccl"`` (one GPU per process) or ``"gloo"`` (CPU); None: NCCL when CUDA is available
            (:func:`init_from_env`). :func:`fit_parallel` passes the run's device's (``DEVICE="cpu"`` on a GPU
            machine trains on the CPU).

    Raises:
        RuntimeError: a process ended without an exception of its own (killed: its signal is named).
    """
    import torch.multiprocessing as mp

    if start_method is None:
        start_method = "spawn" if torch.cuda.is_available() and torch.cuda.is_initialized() else "fork"
        if start_method == "spawn":
            print("CUDA is already in use in this process (e.g. the LR finder): starting the processes with spawn "
                  "(each imports seglib again: some seconds more)")
    with tempfile.TemporaryDirectory(prefix="seglib-ddp-") as folder:
        try:
            mp.start_processes(_child, args=(n, _free_port(), folder, fn, args, backend), nprocs=n,
                               start_method=start_method)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
            errors = sorted(Path(folder).glob("error*.pkl"))
            if errors:
                raise pickle.loads(errors[0].read_bytes()) from err
            raise RuntimeError(f"a data-parallel process ended: {err}") from err
        return pickle.loads(Path(folder, "result.pkl").read_bytes())
