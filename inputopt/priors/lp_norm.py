"""The Lp-norm prior."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inputopt.functional.lp_norm import lp_norm
from inputopt.priors.base import Prior

__all__ = ["LpNorm"]


class LpNorm(Prior):
    r"""Penalize large pixel values: :math:`\sum_k |x_k - c|^p` (or its p-th root, the norm).

    See :func:`inputopt.functional.lp_norm` for the exact definition.

    Args:
        weight: the prior's weight in the loss.
        p: the exponent, a finite number ``>= 1``.
        center: ``c``: a number, or one per channel (e.g. a grey image's values).
        root: penalize the norm :math:`\|x - c\|_p` instead of the sum of powers.

    Example:
        >>> LpNorm(weight=0.1, p=1, center=0.5)(torch.ones(2, 1, 2, 2))
        tensor([2., 2.])
    """

    def __init__(self, weight: float = 1.0, p: float = 2.0, center: float | Sequence[float] = 0.0,
                 root: bool = False) -> None:
        super().__init__(weight)
        lp_norm(torch.zeros(1, 1), p)  # the same checks as the function, now rather than at the first step
        centre = torch.as_tensor(center, dtype=torch.float64)
        if centre.ndim > 1 or not torch.isfinite(centre).all():
            raise ValueError(f"center must be a finite number or one per channel, got {center!r}")
        self.p = p
        self.center = center
        self.root = bool(root)

    def forward(self, x: Tensor) -> Tensor:
        return lp_norm(x, self.p, self.center, self.root)
