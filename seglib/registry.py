"""One small name -> factory registry, used once per kind (losses, metrics, models, optimizers,
schedulers, layouts, augmentations). An unknown name raises a ``KeyError`` that lists the valid ones,
as ``segmentation_models_pytorch.create_model`` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Maps lower-case names to factories.

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"loss"``).

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("l1")
        ... def l1(): ...
        >>> LOSSES.names()
        ['l1']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, obj: Callable[..., Any] | None = None):
        """Register ``obj`` under ``name`` (usable as a decorator).

        Registering the same definition again (same ``__module__`` and ``__qualname__``: a module re-imported,
        e.g. by autoreload) replaces the entry.

        Raises:
            ValueError: ``name`` is taken by another definition (the message names its module).
        """

        def add(o):
            key = name.lower()
            old = self._items.get(key)
            if old is not None and old is not o and (None in _origin(o) or _origin(old) != _origin(o)):
                raise ValueError(f"{self.kind} {name!r} is already registered by {_origin(old)[0]}; "
                                 f"{_origin(o)[0]} needs another name")
            self._items[key] = o
            return o

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory for ``name`` (case-insensitive). Raises ``KeyError`` naming the valid choices."""
        try:
            return self._items[str(name).lower()]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; valid {self.kind} names: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs) -> Any:
        """Call the factory registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return str(name).lower() in self._items


def _origin(obj) -> tuple[str | None, str | None]:
    """Where a registered factory is defined: ``(module, qualified name)``."""
    return getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
