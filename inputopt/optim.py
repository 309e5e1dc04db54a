"""Optimizers of the attack literature, as ``torch.optim.Optimizer`` s over image rows.

Each treats the first dimension of a parameter as the batch: the step of row ``i`` depends only on the
gradient of row ``i``, so images stay independent (one row per image) and can be batched or sharded
freely. Like every ``torch.optim`` optimizer they *descend* the loss; the loss path's loss is
``−objective``, so they ascend the objective.

They work wherever an optimizer is accepted: ``optimize(..., optimizer=partial(SignGradient, lr=2/255))``,
``InputOptimization(optimizer=...)``, and from a YAML config::

    optimizer:
      class_path: inputopt.optim.SignGradient
      init_args: {lr: 0.01}
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["NormalizedGradient", "SignGradient"]


def _check_lr(lr: float) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0 or lr == float("inf"):
        raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
    return float(lr)


class _RowStep(Optimizer):
    """Base of the step rules below: ``p ← p − lr·direction(∇p)``, with ``direction`` from the subclass."""

    def __init__(self, params: Iterable[Tensor], lr: float) -> None:
        super().__init__(params, {"lr": _check_lr(lr)})

    @staticmethod
    def direction(grad: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(self.direction(p.grad), alpha=group["lr"])
        return loss


class SignGradient(_RowStep):
    """``x ← x − lr·sign(∇x)``: the step of FGSM, BIM and L∞ PGD.

    Args:
        params: the tensors to optimize (one row per image).
        lr: the step size, in the units of the tensor (pixels for :class:`~inputopt.params.PixelImage`).

    Example:
        >>> x = torch.nn.Parameter(torch.zeros(2, 3))
        >>> opt = SignGradient([x], lr=0.1)
        >>> x.grad = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -0.5]])
        >>> opt.step()
        >>> x.data
        tensor([[-0.1000,  0.1000,  0.0000],
                [-0.1000, -0.1000,  0.1000]])
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01) -> None:
        super().__init__(params, lr)

    @staticmethod
    def direction(grad: Tensor) -> Tensor:
        return grad.sign()


class NormalizedGradient(_RowStep):
    """``x_i ← x_i − lr·∇x_i / ‖∇x_i‖₂`` per row ``i``: the step of L2 PGD, DDN and FMN.

    Every image moves by exactly ``lr`` in L2 (rows with a zero gradient do not move).

    Args:
        params: the tensors to optimize (first dimension: one row per image).
        lr: the length of every row's step.
        norm: the norm the gradient is normalized by (only ``"L2"``).

    Example:
        >>> x = torch.nn.Parameter(torch.zeros(2, 2))
        >>> opt = NormalizedGradient([x], lr=1.0)
        >>> x.grad = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
        >>> opt.step()
        >>> x.data
        tensor([[-0.6000, -0.8000],
                [ 0.0000,  0.0000]])
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 0.1, norm: Literal["L2"] = "L2") -> None:
        if norm != "L2":
            raise ValueError(f"NormalizedGradient normalizes by the L2 norm; got norm={norm!r}")
        super().__init__(params, lr)

    @staticmethod
    def direction(grad: Tensor) -> Tensor:
        length = grad.flatten(1).norm(dim=1).view(-1, *[1] * (grad.ndim - 1)) if grad.ndim > 1 else grad.norm()
        return grad / length.clamp_min(1e-12)
