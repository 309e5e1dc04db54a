"""The blur penalty: blur the image a little at every step, as a prior."""

from __future__ import annotations

from torch import Tensor

from inputopt.functional.blur import blur_penalty
from inputopt.functional.edge_energy import gaussian_kernel2d
from inputopt.priors.base import Prior

__all__ = ["BlurPenalty"]


class BlurPenalty(Prior):
    r"""Pull each image towards a blurred copy of itself: :math:`\tfrac12 \|x - \operatorname{sg}(b(x))\|^2`.

    The blurred copy gets no gradient, so the gradient is :math:`x - b(x)` and every step blurs the image
    a little (Lucid's ``blur_input_each_step``). See :func:`inputopt.functional.blur_penalty`.

    Args:
        weight: the prior's weight in the loss.
        kernel_size: odd side of the Gaussian kernel.
        sigma: its standard deviation in pixels.

    Example:
        >>> import torch
        >>> BlurPenalty(weight=0.5)(torch.ones(2, 3, 8, 8))  # a flat image is its own blur
        tensor([0., 0.])
    """

    def __init__(self, weight: float = 1.0, kernel_size: int = 3, sigma: float = 1.0) -> None:
        super().__init__(weight)
        gaussian_kernel2d(kernel_size, sigma)  # its checks, now rather than at the first step
        self.kernel_size = kernel_size
        self.sigma = sigma

    def forward(self, x: Tensor) -> Tensor:
        return blur_penalty(x, self.kernel_size, self.sigma)
