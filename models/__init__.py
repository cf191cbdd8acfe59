"""The generator zoo: plain nn.Modules behind a name registry (no Lightning, no I/O).

Contract of every generator: ``forward(x)`` takes ``(B, in_channels, X, Y, Z)`` (channel 0 the
interpolated volume, optionally channel 1 the acquired-slice mask) and returns ``(B, 1, X, Y, Z)``.
Class attribute ``size_multiple``: every spatial size must be a multiple of it.

Acquired-slice generators (class attribute ``grid = "acquired"``, e.g. ``slice_resnet``) compute on the
acquired slices only: ``forward(slices (B, 1, X, Y, K), gap (B,), t (B, S)) -> (B, 1, X, Y, K, S)``,
the values at fractional positions ``t`` after each acquired slice. The others are full-resolution.
"""

from torch import nn

from models.registry import Registry

GENERATORS = Registry("generator")


def acquired_grid(generator: str | type[nn.Module] | nn.Module) -> bool:
    """True for an acquired-slice generator (``grid = "acquired"``): a registry name, a class or an instance."""
    target = GENERATORS.get(generator) if isinstance(generator, str) else generator
    return getattr(target, "grid", "full") == "acquired"

# Import every module so that its @GENERATORS.register decorators run.
from models import dense_unet, linear, slice_resnet, unet3d  # noqa: E402,F401

__all__ = ["GENERATORS", "Registry", "acquired_grid"]
