"""Attacks with a budget: projected gradient steps inside the ε-ball (FGSM, BIM, PGD) and the seed's
plain gradient ascent."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from inputopt.attacks.base import Attack
from inputopt.engine import optimize
from inputopt.functional.projection import Norm
from inputopt.loss import LossPath
from inputopt.optim import NormalizedGradient, SignGradient
from inputopt.record import RunRecord, StepCallback

__all__ = ["BIM", "FGSM", "GradientAscent", "PGD"]


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) in L∞ or L2.

    From a random point of the ε-ball (``random_start``), ``steps`` steps of size ``alpha`` along the
    sign of the gradient (L∞) or the L2-normalized gradient (L2), each followed by the projection onto
    the ε-ball and the box. With ``early_stop``, an image stops moving once it is adversarial, so its
    perturbation stays as small as the steps allow.

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        eps: the budget, or a list of budgets (one result per ε).
        alpha: the step size.
        steps: the number of steps.
        norm: ``"Linf"`` or ``"L2"``.
        random_start: start from a random point of the ε-ball, seeded per image.
        loss: ``"ce"`` (cross-entropy) or ``"margin"`` (CW).
        early_stop: freeze each image once it is adversarial.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> attack = PGD("digits", eps=0.1, alpha=0.02, steps=10)
        >>> adversarial = attack(images, labels)
        >>> bool(((adversarial - images).abs().amax() <= 0.1 + 1e-6).item())
        True
        >>> result = attack.run(images, labels)[0]
        >>> result.success.shape, result.norms.shape, result.steps.shape
        (torch.Size([8]), torch.Size([8]), torch.Size([8]))
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, norm: Norm = "Linf", random_start: bool = True, loss: str = "ce",
                 early_stop: bool = False, **kwargs: Any) -> None:
        super().__init__(model, eps=eps, norm=norm, loss=loss, **kwargs)
        self.alpha = _positive(alpha, "alpha")
        self.steps = _positive_int(steps, "steps")
        self.random_start = bool(random_start)
        self.early_stop = bool(early_stop)

    def step_size(self, eps: float | None) -> float:
        """The length of every step: ``alpha``."""
        return self.alpha

    def optimizer(self, eps: float | None) -> Callable[[list[Tensor]], Optimizer]:
        """The step rule, as an optimizer factory over the image tensor: the gradient's sign (L∞) or the
        L2-normalized gradient, of length :meth:`step_size`. A subclass changes the step here (MI-FGSM:
        momentum, see docs/extending.md) and keeps the rest: start, projection, tracking."""
        return partial(SignGradient if self.norm == "Linf" else NormalizedGradient, lr=self.step_size(eps))

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is None and self.random_start and eps:
            start = self.random_start_images(images, eps, keys)
        param = self.param(images, eps, start)
        return optimize(param, path, self.steps, self.optimizer(eps), targets, callbacks=callbacks, track_done=True,
                        freeze_done=self.early_stop)


class BIM(PGD):
    """The basic iterative method, or I-FGSM (Kurakin et al. 2017): :class:`PGD` without a random start.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:4] for t in load_digits_split("test"))
        >>> BIM("digits", eps=0.1, alpha=0.02, steps=5)(images, labels).shape
        torch.Size([4, 1, 32, 32])
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, norm: Norm = "Linf", loss: str = "ce", early_stop: bool = False, **kwargs: Any) -> None:
        super().__init__(model, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=False, loss=loss,
                         early_stop=early_stop, **kwargs)


class FGSM(PGD):
    """The fast gradient sign method (Goodfellow et al. 2015): one step of size ε along the gradient's sign
    (L∞), or of length ε along the normalized gradient (L2, "FGM").

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:4] for t in load_digits_split("test"))
        >>> adversarial = FGSM("digits", eps=0.1)(images, labels)
        >>> round((adversarial - images).abs().amax().item(), 4)
        0.1
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, norm: Norm = "Linf",
                 loss: str = "ce", **kwargs: Any) -> None:
        super().__init__(model, eps=eps, alpha=1.0, steps=1, norm=norm, random_start=False, loss=loss, **kwargs)

    def step_size(self, eps: float | None) -> float:
        """The length of the single step: ε itself."""
        return eps or 0.0


class GradientAscent(Attack):
    """The seed's procedure: plain gradient ascent of the loss, ``x ← x + lr·∇x L``, no budget.

    SGD with learning rate ``lr`` for ``steps`` steps (0.1 and 15 in the seed), on the cross-entropy
    with the network's own prediction as the label. Run it with ``history=True`` for the table of the
    predicted class after every step, then :meth:`~Attack.sphere_check` for the random-sphere check.

    Args:
        model: the classifier.
        lr: the SGD learning rate.
        steps: the number of steps.
        loss: ``"ce"`` or ``"margin"``.
        **kwargs: ``bounds`` (default ``None`` here: no box, like the seed), ``mean``, ``std``, ...

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images = load_digits_split("test")[0][:2]
        >>> result = GradientAscent("digits", lr=0.1, steps=15).run(images, history=True)[0]
        >>> result.history.shape
        torch.Size([2, 16])
    """

    def __init__(self, model: str | nn.Module, lr: float = 0.1, steps: int = 15, loss: str = "ce",
                 bounds: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(model, eps=None, norm="L2", loss=loss, bounds=bounds, **kwargs)
        self.lr = _positive(lr, "lr")
        self.steps = _positive_int(steps, "steps")

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        param = self.param(images, None, start)
        return optimize(param, path, self.steps, partial(torch.optim.SGD, lr=self.lr), targets, callbacks=callbacks,
                        track_done=True)
