"""Projections applied after every optimizer step: a box, and an Lp ball around the starting images."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["Norm", "lp_norms", "project_lp_ball"]

#: The norms of an ε-ball: ``"Linf"`` (largest absolute change) or ``"L2"`` (Euclidean length).
Norm = Literal["Linf", "L2"]


def lp_norms(delta: Tensor, norm: Norm) -> Tensor:
    """The ``(B,)`` norm of each row of ``delta`` over all its other dimensions.

    Example:
        >>> lp_norms(torch.tensor([[3.0, -4.0]]), "L2"), lp_norms(torch.tensor([[3.0, -4.0]]), "Linf")
        (tensor([5.]), tensor([4.]))
    """
    flat = delta.flatten(1)
    if norm == "Linf":
        return flat.abs().amax(1)
    if norm == "L2":
        return flat.norm(dim=1)
    raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")


def project_lp_ball(x: Tensor, center: Tensor, eps: float | Tensor, norm: Norm = "Linf") -> Tensor:
    """The point of the ball ``‖x_i − center_i‖ ≤ eps`` closest to each row ``x_i``.

    L∞: every element of ``x − center`` clamped to ``[−eps, eps]``. L2: ``x − center`` scaled down to
    length ``eps`` where it is longer.

    Args:
        x: images ``(B, ...)``.
        center: the balls' centres, same shape.
        eps: the radius (>= 0), or one radius per row ``(B,)``.
        norm: ``"Linf"`` or ``"L2"``.

    Example:
        >>> project_lp_ball(torch.tensor([[0.5, -0.1]]), torch.zeros(1, 2), eps=0.2)
        tensor([[ 0.2000, -0.1000]])
        >>> project_lp_ball(torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2), eps=1.0, norm="L2")
        tensor([[0.6000, 0.8000]])
    """
    if isinstance(eps, Tensor):
        if eps.shape != (x.shape[0],) or (eps < 0).any():
            raise ValueError(f"eps must be >= 0, one per row ({x.shape[0]}), got shape {tuple(eps.shape)}")
        eps = eps.to(x).view(-1, *[1] * (x.ndim - 1))
    elif eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    delta = x - center
    if norm == "Linf":
        return center + delta.clamp(-eps, eps)
    length = lp_norms(delta, norm).view(-1, *[1] * (x.ndim - 1))
    factor = torch.where(length > eps, eps / length.clamp_min(1e-30), torch.ones_like(length))
    return center + delta * factor
