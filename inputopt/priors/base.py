"""The abstract prior: a per-image penalty that keeps the optimized input "realistic"."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from inputopt._config import Configurable
from inputopt._repr import init_args_repr

__all__ = ["Prior"]


class Prior(Configurable, nn.Module, ABC):
    """A penalty on the input, one value per image: ``forward(x) -> (B,)``, weighted by ``weight``.

    A subclass implements :meth:`forward`. The base class runs it in float32 outside any autocast
    region (priors are sums of many small squared terms, which half precision gets wrong), checks the
    ``(B,)`` contract and builds the ``repr``. The module adds ``weight · h(x)`` to each image's loss.

    Args:
        weight: the prior's weight in the loss.

    Example:
        >>> class L2(Prior):
        ...     def forward(self, x):
        ...         return x.pow(2).flatten(1).sum(1)
        >>> L2(weight=0.5)(torch.ones(2, 3, 4, 4))
        tensor([48., 48.])
    """

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Return the ``(B,)`` penalty of each image of ``x`` (unweighted)."""

    def __call__(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x if x.dtype == torch.float64 else x.float()
            penalty = super().__call__(x32)
        if not isinstance(penalty, Tensor) or penalty.shape != (x.shape[0],):
            shape = tuple(penalty.shape) if isinstance(penalty, Tensor) else type(penalty).__name__
            raise ValueError(f"{type(self).__name__}.forward must return one penalty per image, shape "
                             f"({x.shape[0]},); got {shape}")
        return penalty

    def extra_repr(self) -> str:
        return init_args_repr(self)
