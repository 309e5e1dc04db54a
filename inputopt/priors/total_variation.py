"""The total-variation prior."""

from __future__ import annotations

from torch import Tensor

from inputopt.functional.total_variation import total_variation
from inputopt.priors.base import Prior

__all__ = ["TotalVariation"]


class TotalVariation(Prior):
    r"""Penalize differences between neighbouring pixels: :math:`\sum |\Delta_v x| + \sum |\Delta_h x|`.

    Anisotropic by default (Lucid's ``total_variation``), or isotropic, :math:`\sum \sqrt{\Delta_v^2 +
    \Delta_h^2}`. See :func:`inputopt.functional.total_variation` for the exact definition.

    Args:
        weight: the prior's weight in the loss.
        isotropic: the isotropic form instead of the anisotropic one.

    Example:
        >>> import torch
        >>> TotalVariation(weight=0.1)(torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]]))
        tensor([2.])
    """

    def __init__(self, weight: float = 1.0, isotropic: bool = False) -> None:
        super().__init__(weight)
        self.isotropic = bool(isotropic)

    def forward(self, x: Tensor) -> Tensor:
        return total_variation(x, self.isotropic)
