"""What one ``fit`` returns (both engines, every notebook): :class:`FitResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FitResult:
    """What a fit did: ``status`` is ``"fresh"`` (started at epoch 0, also when fine-tuning), ``"resumed"``
    or ``"already finished"`` (nothing trained); ``resumed_from`` is None or ``{"epoch", "batch"}`` (epoch in
    progress, batches already done) for a resumed run; ``best`` is ``{"metric", "value", "epoch"}``;
    ``seconds`` wall-clock time of this call; ``best_checkpoint`` WORKDIR's ``best.pt``, None while there is
    no best (``best`` then has value and epoch None); ``fine_tuned_from`` None or ``{"path", "epoch", "data"}`` (the
    checkpoint whose weights the run started from); ``data`` the data fingerprint; the paths are in WORKDIR."""

    history: list[dict]
    epochs_completed: int
    resumed_from: dict | None
    best: dict
    stopped_early: bool
    seconds: float
    checkpoint: Path
    best_checkpoint: Path | None
    tensorboard: Path
    last_val: dict = field(default_factory=dict)
    status: str = "fresh"
    fine_tuned_from: dict | None = None
    data: dict | None = None
