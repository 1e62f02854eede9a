"""Where seglib runs: Colab detection, Google Drive, work folders, device choice and seeding.

On Colab, results live on Drive (``/content/drive/MyDrive/seglib/<experiment>``) while training I/O
goes to a fast local folder (``/content/seglib_local/<experiment>``) that is mirrored to Drive after
every checkpoint (Drive writes are buffered and synced lazily: googlecolab/colabtools#659, #2607).
Elsewhere both are ``runs/<experiment>`` and nothing is mirrored.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DRIVE_MOUNT = Path("/content/drive")
DRIVE_ROOT = DRIVE_MOUNT / "MyDrive" / "seglib"
COLAB_LOCAL_ROOT = Path("/content/seglib_local")


def in_colab() -> bool:
    """True inside a Google Colab kernel.

    ``SEGLIB_ENV=colab`` forces True and ``SEGLIB_ENV=local`` forces False (tests, CI).
    """
    env = os.environ.get("SEGLIB_ENV", "").lower()
    if env in ("colab", "local", "ci"):
        return env == "colab"
    return "google.colab" in sys.modules


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


def mount_drive(mount_point: Path = DRIVE_MOUNT) -> Path | None:
    """Mount Google Drive on Colab (asks for permission once); elsewhere do nothing.

    Returns:
        The ``MyDrive`` folder on Colab, ``None`` elsewhere.
    """
    if not in_colab():
        return None
    if not (mount_point / "MyDrive").is_dir():
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(mount_point))
    return mount_point / "MyDrive"


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


def workspace(experiment: str, workdir: str | os.PathLike | None = None, local: str | os.PathLike | None = None) -> Workspace:
    """Resolve the work folders for ``experiment`` and create them.

    Args:
        experiment: a short name (letters, digits, ``-_.``) used as the folder name.
        workdir: explicit results folder; default ``/content/drive/MyDrive/seglib/<experiment>`` on
            Colab (Drive is mounted first) and ``runs/<experiment>`` elsewhere.
        local: explicit fast folder; default ``/content/seglib_local/<experiment>`` on Colab, else ``workdir``.

    Raises:
        ValueError: ``experiment`` is empty or contains path separators.
    """
    if not experiment or any(c in experiment for c in "/\\") or experiment in (".", ".."):
        raise ValueError(f"experiment name {experiment!r} must be a plain folder name such as 'jetcar'")
    colab = in_colab()
    if workdir is None:
        if colab:
            mount_drive()
            workdir = DRIVE_ROOT / experiment
        else:
            workdir = Path("runs") / experiment
    workdir = Path(workdir).expanduser()
    if local is None:
        local = COLAB_LOCAL_ROOT / experiment if colab else workdir
    local = Path(local).expanduser()
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


def default_num_workers(cuda: bool = True) -> int:
    """DataLoader workers when ``num_workers`` is not set: one per CPU core available to this process, at
    most 8 (Colab: 2); without CUDA (``cuda=False``) at most 2, since the training itself needs the cores."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8 if cuda else 2, n))


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
