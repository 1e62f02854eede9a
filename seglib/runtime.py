"""Where seglib runs: Colab detection, Google Drive, work folders, device choice and seeding.

On Colab, results live on Drive (``/content/drive/MyDrive/seglib/<experiment>``) while training I/O
goes to a fast local folder (``/content/seglib_local/<name>-<hash of WORKDIR>``) that is mirrored to Drive
after every checkpoint (Drive writes are buffered and synced lazily: googlecolab/colabtools#659, #2607).
Elsewhere both are ``runs/<experiment>`` and nothing is mirrored.

Drive: any path under the Drive mount point (``$SEGLIB_DRIVE_MOUNT``, default ``/content/drive``) goes
through :func:`ensure_drive` before it is read or written: Drive is mounted with ``google.colab.drive.mount``
and verified with ``os.path.ismount`` (the one check of a mount; the ``google.colab`` test double in
``tests/colab_double`` binds a temporary folder there). Nothing is ever created under an unmounted mount
point, so a run can never write "to Drive" on the VM's own disk.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

COLAB_LOCAL_ROOT = Path("/content/seglib_local")


class DriveError(RuntimeError):
    """A path on Google Drive cannot be used: Drive is not mounted and cannot be (not Colab, mount declined
    or failed). The message names the path and the ways to continue; nothing was written."""


def drive_mount_point() -> Path:
    """Where Google Drive is mounted: ``$SEGLIB_DRIVE_MOUNT`` (tests bind a temporary folder), else ``/content/drive``."""
    return Path(os.environ.get("SEGLIB_DRIVE_MOUNT") or "/content/drive")


def drive_root() -> Path:
    """Default parent of Colab work folders: ``<mount point>/MyDrive/seglib``."""
    return drive_mount_point() / "MyDrive" / "seglib"


def colab_local_root() -> Path:
    """Parent of the fast local folders on Colab: ``$SEGLIB_COLAB_LOCAL``, else ``/content/seglib_local``."""
    return Path(os.environ.get("SEGLIB_COLAB_LOCAL") or COLAB_LOCAL_ROOT)


def in_colab() -> bool:
    """True inside a Google Colab kernel.

    ``SEGLIB_ENV=colab`` forces True and ``SEGLIB_ENV=local`` forces False (tests, CI).
    """
    env = os.environ.get("SEGLIB_ENV", "").lower()
    if env in ("colab", "local", "ci"):
        return env == "colab"
    return "google.colab" in sys.modules


def on_drive(path: str | os.PathLike) -> bool:
    """True when ``path`` (made absolute, ``~`` expanded, symlinks not followed) is the Drive mount point or
    lies under it."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    mount = os.path.abspath(drive_mount_point())
    return p == mount or p.startswith(mount.rstrip(os.sep) + os.sep)


def mount_drive(path: str | os.PathLike | None = None) -> Path:
    """Mount Google Drive at :func:`drive_mount_point` (Colab asks for permission once) and verify the mount.

    Already mounted (``os.path.ismount``): nothing to do. Nothing is created under the mount point here.

    Args:
        path: the path that needs Drive (``DATA``, ``WORKDIR``, a manifest), named in error messages.

    Returns:
        The ``MyDrive`` folder.

    Raises:
        DriveError: not on Colab and Drive not mounted; the mount was declined, failed or timed out; or
            ``drive.mount`` returned without a mount at the mount point. The message says how to continue.
    """
    mount = drive_mount_point()
    what = f"{os.fspath(path)} is on Google Drive" if path is not None else "Google Drive is needed"
    if os.path.ismount(mount):
        return mount / "MyDrive"
    if not in_colab():
        raise DriveError(
            f"{what}, but Drive is not mounted at {mount} and this is not Colab, so it cannot be mounted here. "
            "Use a local folder instead (e.g. WORKDIR=None for runs/<EXPERIMENT>, DATA=a local folder or zip), "
            "or open the notebook in Colab. Nothing was written.")
    from google.colab import drive  # type: ignore[import-not-found]

    try:
        drive.mount(str(mount))
    except Exception as err:  # noqa: BLE001 - Colab raises MessageError, ValueError, ...: all mean "no Drive"
        raise DriveError(
            f"{what}, but Google Drive was not mounted ({type(err).__name__}: {err}); nothing was written. "
            "To continue: run this cell again and allow access to Google Drive, or set WORKDIR (and DATA) to a "
            "local path such as '/content/runs/<EXPERIMENT>' knowingly -- the VM's disk is lost at the next "
            "disconnect.") from None
    if not os.path.ismount(mount):
        raise DriveError(
            f"{what}, but after drive.mount() nothing is mounted at {mount} (os.path.ismount is False); "
            "nothing was written. Restart the runtime (Runtime > Restart session) and run all again, or set "
            "WORKDIR to a local path knowingly.")
    return mount / "MyDrive"


def ensure_drive(path: str | os.PathLike) -> Path:
    """Make ``path`` usable: when it is under the Drive mount point, mount Drive and verify the mount first
    (:func:`mount_drive`); otherwise do nothing. Call it for every ``DATA``, ``WORKDIR`` and manifest path
    before reading or creating anything.

    Returns:
        ``Path(path)`` unchanged (``~`` expanded).

    Raises:
        DriveError: ``path`` is on Drive and Drive cannot be mounted (see :func:`mount_drive`).
    """
    if on_drive(path):
        mount_drive(path)
    return Path(path).expanduser()


def gpu_warning() -> str | None:
    """On Colab without CUDA, print a visible warning (stderr) and return it; elsewhere or with a GPU, None.

    Notebooks call it before training: Colab can open a notebook on a CPU runtime (no quota, or the
    notebook's metadata did not ask for a GPU), where training is tens of times slower.
    """
    if not in_colab() or torch.cuda.is_available():
        return None
    msg = ("WARNING: this Colab runtime has no GPU, so training will be very slow. Choose Runtime > Change "
           "runtime type > a GPU (e.g. T4), then Run all: the run continues from its last checkpoint on Drive.")
    print("\n" + "!" * 100 + "\n" + msg + "\n" + "!" * 100, file=sys.stderr, flush=True)
    return msg


def show_tensorboard(logdir) -> None:
    """Show TensorBoard for ``logdir`` inline on Colab (``%load_ext tensorboard`` + ``%tensorboard``);
    elsewhere print the command that serves it."""
    if in_colab():
        from IPython import get_ipython

        ip = get_ipython()
        ip.run_line_magic("load_ext", "tensorboard")
        ip.run_line_magic("tensorboard", f"--logdir {logdir}")
    else:
        print(f"tensorboard --logdir {logdir}")


@dataclass(frozen=True)
class Workspace:
    """The folders of one experiment.

    Attributes:
        workdir: durable results folder (Drive on Colab): checkpoints, TensorBoard, summary, exports.
        local: fast folder where training writes first; equal to ``workdir`` outside Colab.
    """

    workdir: Path
    local: Path

    @property
    def mirrored(self) -> bool:
        """True when ``local`` differs from ``workdir`` and files must be copied after each checkpoint."""
        return self.local.resolve() != self.workdir.resolve()


def local_folder(workdir: str | os.PathLike) -> Path:
    """The fast local folder of ``workdir`` on Colab: ``<colab_local_root()>/<name>-<10 hex of the resolved
    path's SHA-1>``. One WORKDIR, one local folder: two runs with different WORKDIRs never share one, whatever
    their experiment names."""
    resolved = str(Path(workdir).expanduser().resolve())
    return colab_local_root() / f"{Path(resolved).name}-{hashlib.sha1(resolved.encode()).hexdigest()[:10]}"


def workspace(experiment: str, workdir: str | os.PathLike | None = None, local: str | os.PathLike | None = None) -> Workspace:
    """Resolve the work folders for ``experiment`` and create them (Drive mounted and verified first).

    Args:
        experiment: a short name (letters, digits, ``-_.``) used as the default folder name.
        workdir: explicit results folder; default ``<Drive>/MyDrive/seglib/<experiment>`` on Colab and
            ``runs/<experiment>`` elsewhere. A folder under the Drive mount point mounts Drive first.
        local: explicit fast folder; default :func:`local_folder` of ``workdir`` on Colab, else ``workdir``.

    Raises:
        ValueError: ``experiment`` is empty or contains path separators.
        DriveError: ``workdir`` or ``local`` is on Drive and Drive cannot be mounted (nothing is created).
    """
    if not experiment or any(c in experiment for c in "/\\") or experiment in (".", ".."):
        raise ValueError(f"experiment name {experiment!r} must be a plain folder name such as 'jetcar'")
    colab = in_colab()
    if workdir is None:
        workdir = mount_drive(drive_root() / experiment) / "seglib" / experiment if colab else Path("runs") / experiment
    workdir = ensure_drive(workdir)
    local = ensure_drive(local) if local is not None else (local_folder(workdir) if colab else workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    local.mkdir(parents=True, exist_ok=True)
    return Workspace(workdir=workdir, local=local)


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), else CUDA when available, else CPU.

    Raises:
        ValueError: CUDA was asked for but is not available (on Colab: Runtime > Change runtime type > GPU).
    """
    if device:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} asked for but CUDA is not available; on Colab choose "
                "Runtime > Change runtime type > GPU, or set DEVICE='cpu'"
            )
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_num_workers(cuda: bool = True, cached: bool = False) -> int:
    """DataLoader workers when ``num_workers`` is not set, chosen by measurement (``benchmarks/loader.py``).

    * CUDA: one per CPU core available to this process, at most 8 (Colab: 2), cached or not: the GPU step
      is short, and workers prepare the next batches (augmentation, normalisation, collate) while it runs.
    * CPU, ``cached`` (the dataset serves resized samples from a RAM or disk cache): 0. Workers cost more
      than they save: on 2 cores a warm RAM-cached CamVid epoch at 224 px gave 165 samples/s without
      workers against 131 with two (96 px: 673 against 308), and a training step, which needs the cores
      itself, was no faster with them (6.31 against 6.22 s, within the noise of a loaded machine).
    * CPU, not cached: at most 2, as before: decoding dominates the loader (92 % of its time), and two
      workers overlap it with the step (issue 12: 217 against 131 samples/s on a quiet 2-core machine;
      here, loaded, training steps 7.47 against 7.84 s).
    """
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cuda:
        return max(0, min(8, n))
    return 0 if cached else max(0, min(2, n))


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries, for checkpoints and summaries."""
    out = {"python": sys.version.split()[0], "torch": str(torch.__version__), "numpy": str(np.__version__)}
    for mod in ("segmentation_models_pytorch", "albumentations", "timm", "seglib"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = str(getattr(m, "__version__", "?"))
    out["cuda"] = torch.version.cuda or "none"
    return out


def set_cpu_threads(n: int | None) -> int:
    """Set torch's CPU threads to ``n`` (None or 0 keeps the default); returns the number in use.

    The default (one per core) is fastest on a machine of your own; on a CPU shared with other busy
    processes one thread can be several times faster (measured 1.6x slower on a quiet 2-core machine,
    3-9x faster on a loaded one).
    """
    if n:
        torch.set_num_threads(int(n))
    return torch.get_num_threads()
