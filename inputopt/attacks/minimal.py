"""Minimal-norm attacks: the smallest perturbation per sample that changes the label."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from inputopt.attacks.base import Attack
from inputopt.attacks.gradient import _positive, _positive_int
from inputopt.engine import optimize
from inputopt.functional.projection import Norm, lp_norms
from inputopt.loss import LossPath
from inputopt.optim import NormalizedGradient
from inputopt.params.base import ImageParam
from inputopt.record import RunRecord, SmallestNorm, StepCallback

__all__ = ["FMN", "FMNRadius"]


class FMNRadius(StepCallback):
    """FMN's ε-ball, per image, after each backward: it shrinks towards the smallest adversarial perturbation
    found (the record's best, under :class:`~inputopt.record.SmallestNorm`) while the image is adversarial,
    grows while it is not, and before the first success jumps to the linear estimate of the distance to the
    boundary, ``‖δ‖ + |margin| / ‖∇‖_dual``.

    Args:
        param: the pixels being optimized (their ``radius`` is set before each projection).
        clean: the clean images.
        norm: ``"Linf"`` or ``"L2"``.
        steps: the run's steps (the cosine schedule of ``γ``).
        gamma: the first factor of the radius update.
        worst: ``(B,)`` the largest perturbation the box allows.
    """

    def __init__(self, param: ImageParam, clean: Tensor, norm: Norm, steps: int, gamma: float, worst: Tensor) -> None:
        self.param, self.clean, self.norm, self.steps, self.gamma, self.worst = param, clean, norm, steps, gamma, worst
        self.radius = torch.full_like(worst, math.inf)

    @torch.no_grad()
    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        gamma = 0.001 + (self.gamma - 0.001) * (1 + math.cos(math.pi * step / self.steps)) / 2
        adversarial = terms["done"]
        found = record.first_success >= 0
        norm = lp_norms(record.scored - self.clean, self.norm)
        grad = self.param.tensor.grad.flatten(1)
        grad_norm = grad.norm(dim=1) if self.norm == "L2" else grad.abs().sum(1)  # the dual norm
        distance = terms["objective"].abs() / grad_norm.clamp_min(1e-12)
        smallest = lp_norms(record.best - self.clean, self.norm)
        radius = torch.where(adversarial, torch.minimum(self.radius * (1 - gamma), smallest),
                             torch.where(found, self.radius * (1 + gamma), norm + distance))
        self.radius = torch.minimum(radius, self.worst)
        self.param.radius = self.radius.to(self.param.radius)


class FMN(Attack):
    """Fast minimum-norm attack (Pintor et al., NeurIPS 2021) in L∞ or L2.

    Normalized gradient steps on the logit margin, projected onto an ε-ball whose radius adapts per
    image: it shrinks by a factor ``1 − γ`` (and to the smallest adversarial perturbation found) while the
    image is adversarial, and grows by ``1 + γ`` while it is not; before the first success it jumps to the
    linear estimate of the distance to the boundary, ``‖δ‖ + |margin| / ‖∇‖_dual``. The step length and
    ``γ`` decay with a cosine schedule (from ``max_stepsize`` to ``min_stepsize``, and from ``gamma`` to
    0.001). The result is the smallest adversarial perturbation seen.

    With ``eps`` (one or several budgets), each result keeps the adversarial image only where its norm is
    ≤ ε: one run gives the robust accuracy at every ε.

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        norm: ``"Linf"`` or ``"L2"``.
        steps: the number of steps.
        max_stepsize: the first step length (L2 length of the normalized gradient step).
        min_stepsize: the last step length (default ``max_stepsize / 100``).
        gamma: the first factor of the radius update.
        eps: ``None`` for the minimal perturbations, or budgets to evaluate them at.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = FMN("digits", norm="L2", steps=50).run(images, labels)[0]
        >>> bool(result.success.all()), bool((result.norms < 5).all())
        (True, True)
    """

    def __init__(self, model: str | nn.Module, norm: Norm = "L2", steps: int = 100, max_stepsize: float = 1.0,
                 min_stepsize: float | None = None, gamma: float = 0.05, eps: float | Sequence[float] | None = None,
                 **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("FMN works on the logit margin; it takes no loss argument")
        super().__init__(model, eps=eps, norm=norm, loss="margin", **kwargs)
        self.steps = _positive_int(steps, "steps")
        self.max_stepsize = _positive(max_stepsize, "max_stepsize")
        self.min_stepsize = self.max_stepsize / 100 if min_stepsize is None else _positive(min_stepsize, "min_stepsize")
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma!r}")
        self.gamma = float(gamma)

    minimal = True

    def worst_norm(self, images: Tensor) -> Tensor:
        """``(B,)`` the largest perturbation the box allows (the radius never exceeds it)."""
        if self.bounds is None:
            return torch.full((images.shape[0],), math.inf, device=images.device)
        low, high = self.bounds
        return lp_norms(torch.maximum(images - low, high - images), self.norm)

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is not None:
            raise ValueError("FMN starts from the clean images; it takes no start")
        param = self.param(images, 0.0)  # the radius is set at every step, before the projection
        radius = FMNRadius(param, images, self.norm, self.steps, self.gamma, self.worst_norm(images))
        step = partial(NormalizedGradient, lr=self.max_stepsize)
        schedule = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=self.steps, eta_min=self.min_stepsize)
        return optimize(param, path, self.steps, step, targets, callbacks=[radius, *callbacks], scheduler=schedule,
                        track_done=True, best=SmallestNorm(images, self.norm), score_final=False)
