"""A name -> generator-class registry (timm's `register_model`, MONAI's explicit import list)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn


class Registry:
    """Maps short names to nn.Module classes; `build(name, **kwargs)` makes one.

    Example:
        >>> from models import GENERATORS
        >>> net = GENERATORS.build("linear")
        >>> "linear" in GENERATORS.names()
        True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[nn.Module]] = {}

    def register(self, name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
        def decorator(cls: type[nn.Module]) -> type[nn.Module]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[nn.Module]:
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._classes[name]

    def parameters_of(self, name: str) -> list[str]:
        """Constructor argument names of a registered class (for error messages and config checks)."""
        sig = inspect.signature(self.get(name).__init__)
        return [p for p in sig.parameters if p != "self"]

    def build(self, name: str, **kwargs) -> nn.Module:
        valid = self.parameters_of(name)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"{self.kind} {name!r} got unknown argument(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
            )
        return self.get(name)(**kwargs)
