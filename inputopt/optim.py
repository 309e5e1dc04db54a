"""Optimizers of the attack literature, as ``torch.optim.Optimizer`` s over image rows.

Each treats the first dimension of a parameter as the batch: the step of row ``i`` depends only on the
gradient of row ``i``, so images stay independent (one row per image) and can be batched or sharded
freely. Like every ``torch.optim`` optimizer they *descend* the loss; the loss path's loss is
``−objective``, so they ascend the objective.

The step size ``lr`` is a number, or a ``(B,)`` tensor of one step size per row (broadcast over the rest of
each row), and their state, like any ``torch.optim`` state of a ``(B, ...)`` tensor, is per row: rows that
carry their own step sizes and state (APGD, MI-FGSM) step through the one step engine
(:class:`~inputopt.engine.StepEngine`) like any other run.

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


def _check_lr(lr: float | Tensor) -> float | Tensor:
    """A finite step size >= 0: a number, or a ``(B,)`` tensor of one per row."""
    if isinstance(lr, Tensor):
        if lr.ndim != 1 or not lr.is_floating_point() or not (torch.isfinite(lr) & (lr >= 0)).all():
            raise ValueError(f"lr as a tensor must be (B,) finite floats >= 0, one per row, got {lr!r}")
        return lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0 or lr == float("inf"):
        raise ValueError(f"lr must be a finite number >= 0, or a (B,) tensor of them (one per row), got {lr!r}")
    return float(lr)


def _row_scaled(step: Tensor, lr: Tensor) -> Tensor:
    """``step`` with row ``i`` times ``lr[i]``."""
    if step.ndim == 0 or lr.shape[0] != step.shape[0]:
        raise ValueError(f"a per-row lr of {lr.shape[0]} rows does not fit a parameter of shape {tuple(step.shape)}")
    return step * lr.to(step).view(-1, *[1] * (step.ndim - 1))


class _RowStep(Optimizer):
    """Base of the step rules below: ``p ← p − lr·direction(∇p)``, with ``direction`` from the subclass and
    ``lr`` a number or a ``(B,)`` tensor (row ``i`` steps by ``lr[i]``; change it in place between steps)."""

    def __init__(self, params: Iterable[Tensor], lr: float | Tensor) -> None:
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
                if p.grad is None:
                    continue
                lr = group["lr"]
                if isinstance(lr, Tensor):
                    p.sub_(_row_scaled(self.direction(p.grad), lr))
                else:
                    p.sub_(self.direction(p.grad), alpha=lr)
        return loss


class SignGradient(_RowStep):
    """``x ← x − lr·sign(∇x)``: the step of FGSM, BIM and L∞ PGD.

    Args:
        params: the tensors to optimize (one row per image).
        lr: the step size, in the units of the tensor (pixels for :class:`~inputopt.params.PixelImage`), or a
            ``(B,)`` tensor of one step size per row.

    Example:
        >>> x = torch.nn.Parameter(torch.zeros(2, 3))
        >>> opt = SignGradient([x], lr=0.1)
        >>> x.grad = torch.tensor([[1.0, -2.0, 0.0], [0.5, 0.5, -0.5]])
        >>> opt.step()
        >>> x.data
        tensor([[-0.1000,  0.1000,  0.0000],
                [-0.1000, -0.1000,  0.1000]])
        >>> opt = SignGradient([x], lr=torch.tensor([0.0, 1.0]))  # a step size per row
        >>> opt.step()
        >>> x.data
        tensor([[-0.1000,  0.1000,  0.0000],
                [-1.1000, -1.1000,  1.1000]])
    """

    def __init__(self, params: Iterable[Tensor], lr: float | Tensor = 0.01) -> None:
        super().__init__(params, lr)

    @staticmethod
    def direction(grad: Tensor) -> Tensor:
        return grad.sign()


class NormalizedGradient(_RowStep):
    """``x_i ← x_i − lr·∇x_i / ‖∇x_i‖₂`` per row ``i``: the step of L2 PGD, DDN and FMN.

    Every image moves by exactly ``lr`` in L2 (rows with a zero gradient do not move).

    Args:
        params: the tensors to optimize (first dimension: one row per image).
        lr: the length of every row's step, or a ``(B,)`` tensor of one length per row.
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

    def __init__(self, params: Iterable[Tensor], lr: float | Tensor = 0.1, norm: Literal["L2"] = "L2") -> None:
        if norm != "L2":
            raise ValueError(f"NormalizedGradient normalizes by the L2 norm; got norm={norm!r}")
        super().__init__(params, lr)

    @staticmethod
    def direction(grad: Tensor) -> Tensor:
        length = grad.flatten(1).norm(dim=1).view(-1, *[1] * (grad.ndim - 1)) if grad.ndim > 1 else grad.norm()
        return grad / length.clamp_min(1e-12)
