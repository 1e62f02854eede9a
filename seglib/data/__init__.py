"""The data layer: sources, layouts, checks, datasets and transforms (see docs/architecture.md)."""

from .colors import convert_color_masks

__all__ = ["convert_color_masks"]
