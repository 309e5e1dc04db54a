"""The base shared by objectives and priors: one float32 value per image, a repr from the constructor."""

from __future__ import annotations

from abc import ABC

import torch
from torch import Tensor, nn

from inputopt._config import Configurable

__all__ = ["Term"]


class Term(Configurable, nn.Module, ABC):
    """A per-image quantity: ``forward(...) -> (B,)``, one unreduced value per image.

    Objectives (:class:`~inputopt.objectives.InputObjective`, maximized) and priors
    (:class:`~inputopt.priors.Prior`, penalized) both derive from it. The base class checks that a result
    has one value per image, casts it to float32 and builds the ``repr`` from the constructor arguments,
    so a subclass writes only its formula (the ``repr`` comes from :class:`~inputopt._config.Configurable`). Only the module reduces over images.

    Example:
        >>> from inputopt.priors import Prior
        >>> class L1(Prior):
        ...     def forward(self, x):
        ...         return x.abs().flatten(1).sum(1)
        >>> L1(weight=0.5)
        L1(weight=0.5)
    """

    #: What one value is called in error messages ("score", "penalty").
    value_name = "value"

    def per_image(self, value: object, batch_size: int) -> Tensor:
        """Check the ``(batch_size,)`` contract and return ``value`` as float32 (float64 passes through)."""
        if not isinstance(value, Tensor) or value.shape != (batch_size,):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{type(self).__name__}.forward must return one {self.value_name} per image, shape "
                             f"({batch_size},); got {shape}")
        return value if value.dtype == torch.float64 else value.float()
