"""The multi-scale edge energy prior."""

from __future__ import annotations

from torch import Tensor

from inputopt.functional.edge_energy import multi_scale_edge_energy
from inputopt.priors.base import Prior

__all__ = ["MultiScaleEdgeEnergy"]


class MultiScaleEdgeEnergy(Prior):
    r"""Penalize edges at every scale: :math:`h(x) = \sum_s \|\delta^s(x) - g \circledast \delta^s(x)\|^2`.

    See :func:`inputopt.functional.multi_scale_edge_energy` for the exact definition.

    Args:
        weight: the prior's weight in the loss.
        kernel_size: side of the Gaussian kernel ``g``.
        sigma: its standard deviation in pixels.

    Example:
        >>> import torch
        >>> prior = MultiScaleEdgeEnergy(weight=1.0)
        >>> prior(torch.zeros(2, 3, 32, 32))
        tensor([0., 0.])
    """

    def __init__(self, weight: float = 1.0, kernel_size: int = 5, sigma: float = 1.0) -> None:
        super().__init__(weight)
        self.kernel_size = kernel_size
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return multi_scale_edge_energy(x, self.kernel_size, self.sigma)
