"""Catalyst 22.4 on today's stack: install check, accelerate 1.x fixes, explicit engines.

Catalyst's last release (22.4, April 2022) still trains with torch 2.x and numpy 2, but:

1. pip >= 24.1 refuses to install it (its metadata has ``scikit-image (<0.19.0>=0.16.1)``).
   :data:`DEPENDENCY_PINS` and :data:`CATALYST_PIN` are the one verified set (``requirements-catalyst.txt``,
   the ``[catalyst]`` extra, README and ``docs/catalyst.md`` repeat them; a test checks that they agree);
   :func:`install_catalyst` installs it with any pip (deps first, then catalyst with
   ``--no-deps --use-deprecated=legacy-resolver``), :data:`INSTALL_HINT` prints the recipes.
2. accelerate renamed ``DistributedType.TPU`` to ``XLA`` (0.27 -> 0.34), so every run crashed at the end
   of its first loader with ``AttributeError: TPU`` (``catalyst/core/engine.py:88``). :func:`apply`
   swaps the ``DistributedType`` that ``catalyst.core.engine`` and ``catalyst.callbacks.metrics.cmc_score``
   imported for a proxy that answers ``TPU`` with ``XLA``.
3. accelerate removed ``Accelerator(fp16=...)`` (0.16), so ``runner.train()`` without an ``engine=`` on a
   GPU crashed with ``TypeError: ... unexpected keyword argument 'fp16'``. seglib always passes an
   explicit engine (:func:`make_engine`), and :func:`apply` also patches ``get_available_engine`` to
   translate ``fp16=True`` into ``mixed_precision="fp16"`` for code that calls it.
4. ``catalyst.contrib`` imports ``six`` without declaring it (``requirements-catalyst.txt`` pins it).

Nothing installed is edited: the fixes are attribute assignments in this process, applied once.
Source: ``../shared/reference/environment.md`` section 3 (each failure reproduced and each fix verified).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

VERIFIED_VERSION = "22.04"  # catalyst.__version__ of the release pinned below
#: Catalyst's runtime dependencies, verified together with requirements.txt (six: undeclared by catalyst.contrib).
DEPENDENCY_PINS = ("accelerate==1.15.0", "hydra-slayer==0.5.0", "tensorboardX==2.6.5", "six==1.17.0")
CATALYST_PIN = "catalyst==22.4"
#: how Catalyst itself is installed with pip >= 24.1, after :data:`DEPENDENCY_PINS`
NO_DEPS_FLAGS = ("--no-deps", "--use-deprecated=legacy-resolver")
INSTALL_HINT = (
    "Catalyst is not installed; the seglib engine (ENGINE='seglib') works without it. To use ENGINE='catalyst':\n"
    "  with pip < 24.1 (a fresh venv, `make test`):  pip install -r requirements-catalyst.txt\n"
    f"  with pip >= 24.1 (Colab):  pip install {' '.join(DEPENDENCY_PINS)}\n"
    f"                             pip install {' '.join(NO_DEPS_FLAGS)} {CATALYST_PIN}\n"
    "  or, from Python: from seglib.integrations.catalyst_compat import install_catalyst; install_catalyst()\n"
    "  (then restart the kernel on Colab if catalyst was imported before)"
)
_APPLIED = False


class CatalystMissing(ImportError):
    """Catalyst (or one of its runtime dependencies) cannot be imported; the message says how to install it."""


def require_catalyst():
    """Import and return the ``catalyst`` package, checking its version and the undeclared ``six``.

    Raises:
        CatalystMissing: catalyst, accelerate or six is missing (message: :data:`INSTALL_HINT` and the
            original error).
    """
    from .. import _torchvision_guard

    _torchvision_guard.ensure_torchvision()  # catalyst may import torchvision through optional extras
    try:
        catalyst = importlib.import_module("catalyst")
        importlib.import_module("catalyst.dl")
        importlib.import_module("six")
    except ImportError as err:
        raise CatalystMissing(f"{INSTALL_HINT}\n(import failed: {type(err).__name__}: {err})") from err
    version = getattr(catalyst, "__version__", "?")
    if version != VERIFIED_VERSION:
        warnings.warn(f"catalyst {version} is installed; seglib's Catalyst engine was verified with 22.4 "
                      "(requirements-catalyst.txt)", UserWarning, stacklevel=2)
    return catalyst


def install_commands(python: str | None = None) -> list[list[str]]:
    """The two pip commands that install the verified Catalyst set for ``python`` (default: this interpreter):
    :data:`DEPENDENCY_PINS`, then :data:`CATALYST_PIN` with :data:`NO_DEPS_FLAGS` (works with pip >= 24.1)."""
    pip = [python or sys.executable, "-m", "pip", "install", "-q"]
    return [pip + list(DEPENDENCY_PINS), pip + list(NO_DEPS_FLAGS) + [CATALYST_PIN]]


def install_catalyst(python: str | None = None) -> None:
    """Install Catalyst 22.4 and its pinned dependencies into ``python``'s environment (default: this
    interpreter), running :func:`install_commands` in order; what the notebook's Colab cell calls.

    Raises:
        subprocess.CalledProcessError: a pip command failed.
    """
    for cmd in install_commands(python):
        subprocess.run(cmd, check=True)
    importlib.invalidate_caches()  # let this process import the packages just installed


def catalyst_available() -> bool:
    """True if :func:`require_catalyst` would succeed (imports catalyst when it is there)."""
    try:
        require_catalyst()
    except CatalystMissing:
        return False
    return True


class _DistributedTypeProxy:
    """Stands in for ``accelerate.DistributedType`` inside catalyst: ``TPU`` (removed) means ``XLA``."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        if name == "TPU" and not hasattr(self._real, "TPU"):
            name = "XLA"
        return getattr(self._real, name)


def apply() -> None:
    """Apply the accelerate 1.x fixes (idempotent; safe with old accelerate versions too).

    Raises:
        CatalystMissing: catalyst is not installed.
    """
    global _APPLIED
    if _APPLIED:
        return
    require_catalyst()
    for module_name in ("catalyst.core.engine", "catalyst.callbacks.metrics.cmc_score"):
        module = importlib.import_module(module_name)
        real = module.DistributedType
        if not isinstance(real, _DistributedTypeProxy):
            module.DistributedType = _DistributedTypeProxy(real)

    import catalyst.runners.runner as runner_module
    import catalyst.utils as catalyst_utils
    import catalyst.utils.torch as torch_utils

    original = torch_utils.get_available_engine

    def get_available_engine(cpu: bool = False, fp16: bool = False, ddp: bool = False):
        """catalyst's engine choice without the ``fp16=`` argument accelerate removed."""
        import torch

        if ddp and torch.cuda.device_count() > 1:
            from catalyst.engines.torch import DistributedDataParallelEngine

            return DistributedDataParallelEngine(mixed_precision="fp16" if fp16 else "no")
        return make_engine("cpu" if cpu or not torch.cuda.is_available() else "cuda", amp=fp16)

    get_available_engine.original = original
    for module in (torch_utils, catalyst_utils, runner_module):
        module.get_available_engine = get_available_engine
    _APPLIED = True


def make_engine(device: str = "cpu", amp: bool = False):
    """An explicit Catalyst engine: ``CPUEngine()``, or ``GPUEngine(mixed_precision="fp16"|"no")`` on CUDA.

    Args:
        device: ``"cpu"`` or ``"cuda"`` (a ``"cuda:N"`` index is left to ``CUDA_VISIBLE_DEVICES``).
        amp: float16 mixed precision (CUDA only; ignored on CPU).

    Raises:
        ValueError: another mixed-precision setting was already used in this process (accelerate keeps
            one global state): restart the kernel to change AMP.
    """
    apply()
    from catalyst import dl

    try:
        if str(device).startswith("cuda"):
            return dl.GPUEngine(mixed_precision="fp16" if amp else "no")
        return dl.CPUEngine()
    except ValueError as err:
        if "already been initialized" not in str(err):
            raise
        raise ValueError(f"accelerate already runs with another precision in this process ({err}); restart the "
                         f"kernel (Runtime > Restart session) to train with device={device!r}, amp={amp}") from err
