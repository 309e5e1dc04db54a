"""Carlini and Wagner's L2 attack (2017): a penalty method on the public API (``docs/extending.md`` shows it whole)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from inputopt.attacks.base import Attack
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.params import PixelImage
from inputopt.priors import Distance
from inputopt.record import RunRecord, SmallestNorm, StepCallback

__all__ = ["CW", "AbortEarly"]


class AbortEarly(StepCallback):
    """Every tenth of the run, stop the images whose loss rose since the last check: each image on its own
    (``"image"``: its result does not depend on its batch), or all of them when the batch's total loss rose
    (``"batch"``, what Carlini and Wagner, and torchattacks, do)."""

    def __init__(self, steps: int, per: str = "image") -> None:
        self.every, self.previous, self.per = max(steps // 10, 1), math.inf, per

    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        if step % self.every == 0:
            loss = terms["loss"] if self.per == "image" else terms["loss"].sum()
            record.active &= ~(loss > self.previous)
            self.previous = loss.clone()


class CW(Attack):
    """Carlini-Wagner L2 (2017): minimize ``‖x − x0‖² + c·max(z_y − max_{j≠y} z_j, −κ)`` in tanh space.

    Adam on ``w`` with ``x = sigmoid(w)`` in the box (the paper's ``(tanh + 1) / 2``, whose ``w`` is half ours:
    the step is doubled to match), each image keeping its smallest adversarial point. A binary search over
    each image's ``c`` (``search_steps``) lowers ``c`` where the attack succeeded and raises it (×10 until a
    success) where it did not. With ``eps``, the results at each budget keep the points within it.

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        c: the first weight of the margin against the distance.
        kappa: the confidence κ: the margin stops counting at κ.
        steps: Adam steps per search step.
        lr: Adam's learning rate in the paper's ``w``.
        search_steps: binary-search steps over ``c`` (1: ``c`` as given, as torchattacks' ``CW``).
        abort_early: ``"image"``: stop each image whose loss rose over a tenth of the steps; ``"batch"``: stop
            them all when the batch's total loss rose (Carlini and Wagner's and torchattacks' rule, which makes an
            image's result depend on its batch); ``None``: run every step.
        eps: ``None`` for the minimal perturbations, or budgets to evaluate them at.
        **kwargs: ``bounds`` (needed: the box of the tanh space), ``mean``, ``std``, ``weights``, ``state_dict``.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = CW("digits", c=1.0, steps=30, lr=0.05).run(images, labels)[0]
        >>> bool(result.success.float().mean() > 0.5), bool((result.norms[result.success] < 5).all())
        (True, True)
    """

    minimal = True

    def __init__(self, model: str | nn.Module, c: float = 1.0, kappa: float = 0.0, steps: int = 50, lr: float = 0.01,
                 search_steps: int = 1, abort_early: str | None = None, eps: float | Sequence[float] | None = None,
                 **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("CW works on the logit margin capped at kappa; it takes no loss argument")
        margin = {"class_path": "inputopt.objectives.Margin", "init_args": {"confidence": float(kappa)}}
        super().__init__(model, eps=eps, norm="L2", loss=margin, **kwargs)
        if self.bounds is None:
            raise ValueError("CW optimizes in the tanh space of a box: give bounds (low, high)")
        for name, value in (("c", c), ("lr", lr)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name, value in (("steps", steps), ("search_steps", search_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.c, self.kappa, self.steps, self.lr = float(c), float(kappa), steps, float(lr)
        if abort_early not in (None, "image", "batch"):
            raise ValueError(f"abort_early must be None, 'image' or 'batch', got {abort_early!r}")
        self.search_steps, self.abort_early = search_steps, abort_early

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is not None:
            raise ValueError("CW starts from the clean images; it takes no start")
        path = LossPath(path.network, path.objective, [Distance()], normalize=path.normalize)  # + ‖x − x0‖²
        c = torch.full((len(images),), self.c, device=images.device)
        low, high = torch.zeros_like(c), torch.full_like(c, math.inf)
        best = None
        for _ in range(self.search_steps):
            param = PixelImage(sigmoid=self.bounds).to(images.device).initialize_from(images)
            abort = [AbortEarly(self.steps, self.abort_early)] if self.abort_early else []
            record = optimize(param, path, self.steps, partial(torch.optim.Adam, lr=2 * self.lr, eps=5e-9), targets,
                              callbacks=[*abort, *callbacks], track_done=True, reference=images,
                              weights={"objective": c}, best=SmallestNorm(images, "L2"))
            best = record if best is None else best.keep_best(record)
            found = torch.isfinite(record.best_score)
            high = torch.where(found, torch.minimum(high, c), high)
            low = torch.where(found, low, torch.maximum(low, c))
            c = torch.where(torch.isfinite(high), (low + high) / 2, c * 10)
        missed = ~torch.isfinite(best.best_score)
        best.best[missed] = images[missed]  # never adversarial: the clean image itself
        return best
