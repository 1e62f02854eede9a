"""Make ``import torchvision`` work when its compiled extension does not match the installed torch.

The torchvision wheel on PyPI is built against CUDA torch. Installed next to a CPU-only torch
(this project's CI), its ``_C`` extension fails to load silently and
``torchvision/_meta_registrations.py`` then raises::

    RuntimeError: operator torchvision::nms does not exist

on ``import torchvision`` -- and therefore on ``import timm``, ``segmentation_models_pytorch`` and
``torchmetrics``. :func:`ensure_torchvision` catches exactly that error, defines the two operators
torchvision registers fake kernels for (``nms`` and ``qnms``), gives ``nms`` a pure-PyTorch CPU
kernel, and imports torchvision again. Where torchvision loads normally (Colab, any matching
install) or is absent, it does nothing. It must run before anything imports torchvision; ``import
seglib`` runs it first.

Source of the diagnosis: ``../shared/reference/environment.md`` section 2.
"""

from __future__ import annotations

import sys

import torch

_LIBS: list = []  # keep torch.library.Library objects alive for the whole process
STATUS = "not checked"


def _nms_cpu(dets: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; ``dets`` K x 4 (x1, y1, x2, y2), ``scores`` K; returns kept indices (int64) by score."""
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = dets.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep = []
    suppressed = torch.zeros(dets.shape[0], dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas - inter).clamp(min=1e-12)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def ensure_torchvision() -> str:
    """Import torchvision, repairing the CPU-torch/CUDA-torchvision mismatch if (and only if) it occurs.

    Returns:
        ``"absent"`` (torchvision not installed), ``"ok"`` (imported normally, nothing changed) or
        ``"shimmed"`` (the operators were defined here; ``torchvision.ops.nms`` runs in pure PyTorch,
        ``torchvision.io`` image decoding stays unavailable -- seglib decodes with PIL).

    Raises:
        RuntimeError: any torchvision import error other than the known ``torchvision::nms`` one.
    """
    global STATUS
    if STATUS in ("ok", "shimmed", "absent"):
        return STATUS
    try:
        import torchvision  # noqa: F401
        STATUS = "ok"
        return STATUS
    except ModuleNotFoundError:
        STATUS = "absent"
        return STATUS
    except RuntimeError as err:
        if "torchvision::nms" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    impl = torch.library.Library("torchvision", "IMPL", "CPU")
    impl.impl("nms", _nms_cpu)
    _LIBS.extend([lib, impl])
    import torchvision.ops.boxes as boxes

    boxes._assert_has_ops = lambda: None
    STATUS = "shimmed"
    return STATUS
