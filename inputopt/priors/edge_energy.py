"""The multi-scale edge energy prior."""

from __future__ import annotations

from torch import Tensor

from inputopt.functional.edge_energy import multi_scale_edge_energy
from inputopt.priors.base import Prior

__all__ = ["MultiScaleEdgeEnergy"]


class MultiScaleEdgeEnergy(Prior):
    r"""Penalize edges at every scale: :math:`h(x) = \sum_s \|\delta^s(x) - g \circledast \delta^s(x)\|^2`.

    See :func:`inputopt.functional.multi_scale_edge_energy` for the exact definition.

    The energy is a sum over pixels and channels, so with ``reduction="sum"`` (the default, the
    definition) the weight that balances it against an objective depends on the image size: the same
    texture on ``k`` times the pixels has ``k`` times the energy. ``reduction="mean"`` divides by
    ``C·H·W``, so one weight serves every size and channel count: ``weight`` with ``"mean"`` equals
    ``weight / (C·H·W)`` with ``"sum"`` (0.3 at 1x32x32 with ``"sum"`` is 307 with ``"mean"``). To move a
    ``"sum"`` weight to another size, multiply it by ``(C·H·W)_old / (C·H·W)_new``.

    Args:
        weight: the prior's weight in the loss.
        kernel_size: side of the Gaussian kernel ``g``.
        sigma: its standard deviation in pixels.
        reduction: ``"sum"`` or ``"mean"`` (see above).

    Example:
        >>> import torch
        >>> prior = MultiScaleEdgeEnergy(weight=1.0)
        >>> prior(torch.zeros(2, 3, 32, 32))
        tensor([0., 0.])
    """

    def __init__(self, weight: float = 1.0, kernel_size: int = 5, sigma: float = 1.0, reduction: str = "sum") -> None:
        super().__init__(weight)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.reduction = reduction

    def forward(self, x: Tensor) -> Tensor:
        return multi_scale_edge_energy(x, self.kernel_size, self.sigma, self.reduction)
