"""A penalty centred on each image's own reference: the distance to the clean image, or to a photo."""

from __future__ import annotations

import torch
from torch import Tensor

from inputopt.functional.lp_norm import lp_norm
from inputopt.priors.base import Prior

__all__ = ["Distance"]


class Distance(Prior):
    r"""The distance of each image to its row's reference: :math:`\sum_k |x_k - r_k|^p`, or its p-th root.

    A centred prior: the loss path gives row ``i`` its own reference ``r_i`` (an attack's clean image, the
    photo a feature accentuation starts from; by default the run's starting images), as it gives its target.
    With ``p=2`` it is Carlini and Wagner's squared L2 distance ``‖x − x0‖²``; with ``root=True``, the norm.

    Args:
        weight: the prior's weight in the loss (per-row weights come with the run: ``weights={"Distance": c}``).
        p: the exponent, a finite number ``>= 1``.
        root: penalize the norm :math:`\|x - r\|_p` instead of the sum of powers.

    Example:
        >>> x, reference = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
        >>> Distance()(x, reference)
        tensor([4., 4.])
        >>> Distance(root=True)(x, reference)
        tensor([2., 2.])
    """

    centred = True

    def __init__(self, weight: float = 1.0, p: float = 2.0, root: bool = False) -> None:
        super().__init__(weight)
        lp_norm(torch.zeros(1, 1), p)  # the same checks as the function, now rather than at the first step
        self.p = p
        self.root = bool(root)

    def forward(self, x: Tensor, reference: Tensor) -> Tensor:
        if reference.shape != x.shape:
            raise ValueError(f"Distance: the reference must have the images' shape {tuple(x.shape)}, got "
                             f"{tuple(reference.shape)}")
        return lp_norm(x - reference, self.p, 0.0, self.root)
