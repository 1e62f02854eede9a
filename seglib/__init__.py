"""seglib: resumable segmentation training for Colab notebooks.

Importing seglib first repairs ``import torchvision`` where a CUDA-built torchvision sits next to a
CPU-only torch (see :mod:`seglib._torchvision_guard`); where torchvision loads normally it does nothing.
"""

from ._torchvision_guard import ensure_torchvision

TORCHVISION = ensure_torchvision()

__version__ = "0.1.0"

from .config import TrainConfig  # noqa: E402
from .registry import Registry  # noqa: E402

__all__ = ["TORCHVISION", "Registry", "TrainConfig", "__version__", "export_onnx", "is_main_process", "load_run"]


def __getattr__(name: str):
    """``seglib.load_run`` and ``seglib.export_onnx`` (:mod:`seglib.deploy`) and ``seglib.is_main_process``
    (:mod:`seglib.train.distributed`: guard evaluation and export in a ``torchrun`` script), imported on first use so
    that ``import seglib`` stays light."""
    if name in ("load_run", "export_onnx"):
        from . import deploy

        return getattr(deploy, name)
    if name == "is_main_process":
        from .train.distributed import is_main_process

        return is_main_process
    raise AttributeError(f"module 'seglib' has no attribute {name!r}")
