"""The Lp norm of the images (or of their distance to a centre), a prior that keeps pixel values small."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["lp_norm"]


def lp_norm(x: Tensor, p: float = 2.0, center: float | Sequence[float] | Tensor = 0.0, root: bool = False) -> Tensor:
    r"""The Lp penalty of each image: :math:`\sum_k |x_k - c|^p`, or its p-th root :math:`\|x - c\|_p`.

    The sum runs over every channel and pixel of the image. Without the root (the default) the penalty is
    a sum over pixels, like the other priors, and smooth for ``p > 1``: Mahendran and Vedaldi's α-norm
    regularizer; ``p=1`` is Lucid's ``L1``. With ``root=True`` it is the norm itself (Lucid's ``L2``,
    without its ε). It runs in float32 (float64 stays float64), outside any autocast region.

    Args:
        x: images ``(B, C, H, W)`` (any ``(B, ...)`` works).
        p: the exponent, a finite number ``>= 1``.
        center: ``c``: a number, or one per channel (``C`` numbers, for ``(B, C, H, W)`` images).
        root: return the norm (the p-th root of the sum) instead of the sum.

    Returns:
        Tensor of shape ``(B,)``.

    Example:
        >>> x = torch.tensor([[[[3.0, -4.0]]]])
        >>> lp_norm(x), lp_norm(x, root=True), lp_norm(x, p=1, center=1.0)
        (tensor([25.]), tensor([5.]), tensor([7.]))
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 1:
        raise ValueError(f"p must be a finite number >= 1, got {p!r}")
    if x.ndim < 2:
        raise ValueError(f"lp_norm needs a batch (B, ...), got a tensor of shape {tuple(x.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x if x.dtype == torch.float64 else x.float()
        c = torch.as_tensor(center, dtype=x.dtype, device=x.device)
        if c.ndim > 1 or not torch.isfinite(c).all():
            raise ValueError(f"center must be a finite number or one per channel, got {center!r}")
        if c.ndim == 1:
            if x.ndim < 3 or c.shape[0] != x.shape[1]:
                raise ValueError(f"center has {c.shape[0]} values, one per channel, but the images have shape "
                                 f"{tuple(x.shape)}")
            c = c.view(1, -1, *[1] * (x.ndim - 2))
        delta = (x - c).flatten(1)
        if root:
            return torch.linalg.vector_norm(delta, ord=p, dim=1)
        return delta.abs().pow(p).sum(1)
