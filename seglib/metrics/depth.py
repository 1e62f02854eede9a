"""Epoch metrics of the depth + mask model (declared in :data:`seglib.metrics.METRICS`).

Mask (``p = sigmoid(mask_logits)``, ``t`` the {0, 1} mask), per image
(:func:`seglib.metrics.functional.mask_iou`), then averaged over images:

* ``mask_iou_soft`` -- seed 000's IoU, on probabilities with no threshold: ``(sum(p t) + 1e-6) /
  (sum(p) + sum(t) - sum(p t) + 1e-6)`` (shan18 tensornet ``Learner._iou``; the original logged it as "IoU");
* ``mask_iou`` -- the exact IoU (Jaccard) of ``p > threshold`` (0.5). An image whose prediction and mask are
  both empty scores 1 (the empty-mask rule of :mod:`seglib.metrics.functional`).

``mask_iou`` and ``mask_iou_soft`` were ``iou`` and ``iou_soft`` before issue 9 (see
:data:`seglib.metrics.registry.LEGACY_KEYS`).

Depth (``d = sigmoid(depth_logits)``, ``g`` the target, both in [0, 1] with 1 = near), pooled over all
valid pixels of the epoch as Eigen et al. 2014 (NIPS, "Depth map prediction from a single image")
define them over the evaluation set:

* ``rmse`` -- ``sqrt(mean((d - g)^2))`` over valid pixels;
* ``abs_rel`` -- ``mean(|d - g| / g)`` and ``delta1`` -- fraction with ``max(d / g, g / d) < 1.25``, both
  over valid pixels with ``g > 1e-4`` (the original's ``label > 0.0001``). They are computed on the [0, 1]
  map values (as tensornet's ``abs_rel``), not on metric distances, so they compare runs on the same
  data, not with published metric-depth tables.
"""

from __future__ import annotations

import torch

from .functional import mask_iou
from .registry import register_metric

EPS = 1e-6
VALID_MIN = 1e-4
DEPTH_KEYS = (
    register_metric("mask_iou", True, "IoU of the foreground mask thresholded at 0.5, per image, averaged over "
                                      "images (an empty prediction of an empty mask scores 1)"),
    register_metric("mask_iou_soft", True, "seed 000's soft IoU of the mask on sigmoid probabilities (no threshold, "
                                           "smoothing 1e-6), per image, averaged over images"),
    register_metric("rmse", False, "depth RMSE over valid pixels ([0, 1] depth, 1 = near)"),
    register_metric("abs_rel", False, "depth absolute relative error over valid pixels with target > 1e-4 "
                                      "(Eigen et al. 2014)"),
    register_metric("delta1", True, "fraction of valid depth pixels with max(pred/true, true/pred) < 1.25 "
                                    "(Eigen et al. 2014)"),
)
"""The keys of :meth:`DepthSegMetrics.compute`."""


class DepthSegMetrics:
    """Accumulates mask and depth statistics over an epoch on the device; :meth:`compute` returns the scores.

    ``update(outputs, target)`` takes ``outputs = (depth_logits, mask_logits)`` (``float N x 1 x H x W``)
    and ``target = {"depth", "mask", "valid"}`` (``float N x 1 x H x W``; ``valid`` optional) and does not
    synchronise with the host.

    Args:
        threshold: probability above which a pixel is foreground for ``mask_iou`` (0.5).

    Attributes:
        keys: :data:`DEPTH_KEYS`; task: ``"depth"`` (for :func:`seglib.metrics.upgrade_keys`).
    """

    task = "depth"
    keys = DEPTH_KEYS

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.sums: dict[str, torch.Tensor] | None = None

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.sums = None

    @torch.no_grad()
    def update(self, outputs, target) -> None:
        """Add one batch (shapes in the class docstring)."""
        depth_logits, mask_logits = outputs
        probs, d = torch.sigmoid(mask_logits.float()), torch.sigmoid(depth_logits.float())
        t, g = target["mask"].float(), target["depth"].float()
        valid = target.get("valid")
        valid = torch.ones_like(g, dtype=torch.bool) if valid is None else valid > 0.5
        rel = valid & (g > VALID_MIN)
        gd = g.clamp(min=VALID_MIN)
        ratio = torch.maximum(d / gd, gd / d.clamp(min=EPS))
        batch = {
            "images": torch.tensor(float(t.shape[0]), device=t.device, dtype=torch.float64),
            "mask_iou": mask_iou(probs, t, self.threshold).sum(),
            "mask_iou_soft": mask_iou(probs, t, None, smooth=EPS).sum(),
            "sq": (((d - g) ** 2) * valid).double().sum(),
            "n_valid": valid.double().sum(),
            "rel": ((d - g).abs() / gd * rel).double().sum(),
            "delta1": ((ratio < 1.25) & rel).double().sum(),
            "n_rel": rel.double().sum(),
        }
        self.sums = batch if self.sums is None else {k: self.sums[k] + v for k, v in batch.items()}

    def compute(self) -> dict[str, float]:
        """``{"mask_iou", "mask_iou_soft", "rmse", "abs_rel", "delta1"}`` as floats (NaN when nothing was seen)."""
        if self.sums is None:
            return {k: float("nan") for k in DEPTH_KEYS}
        s = {k: float(v) for k, v in self.sums.items()}

        def div(a, b):
            return a / b if b > 0 else float("nan")

        return {"mask_iou": div(s["mask_iou"], s["images"]), "mask_iou_soft": div(s["mask_iou_soft"], s["images"]),
                "rmse": div(s["sq"], s["n_valid"]) ** 0.5 if s["n_valid"] > 0 else float("nan"),
                "abs_rel": div(s["rel"], s["n_rel"]), "delta1": div(s["delta1"], s["n_rel"])}
