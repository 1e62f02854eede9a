"""From a trained run to a deployed model: :func:`load_run` (a run from its checkpoint alone: model,
preprocessing, class names, colours, :meth:`~LoadedRun.predict` for an image, a folder or a zip) and
:func:`export_onnx` (an ONNX graph checked against PyTorch in onnxruntime). See ``docs/deploy.md``.
"""

from .inputs import collect_images
from .loaded import LoadedRun, find_checkpoint, load_run
from .onnx_export import OnnxExport, OnnxMismatch, export_onnx
from .writing import Predictions

__all__ = ["LoadedRun", "OnnxExport", "OnnxMismatch", "Predictions", "collect_images", "export_onnx",
           "find_checkpoint", "load_run"]
