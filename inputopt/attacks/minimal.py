"""Minimal-norm attacks: the smallest perturbation per sample that changes the label (FMN, DDN, DeepFool)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from inputopt.attacks.base import Attack, _check_finite_logits
from inputopt.attacks.gradient import _positive, _positive_int
from inputopt.engine import optimize
from inputopt.functional.projection import Norm, lp_norms
from inputopt.loss import LossPath
from inputopt.optim import NormalizedGradient
from inputopt.params import PixelImage
from inputopt.params.base import ImageParam
from inputopt.record import RunRecord, SmallestNorm, StepCallback

__all__ = ["DDN", "DDNRadius", "DeepFool", "FMN", "FMNRadius"]


def _worst_norm(images: Tensor, bounds: tuple[float, float] | None, norm: Norm) -> Tensor:
    """``(B,)`` the largest perturbation of each image that the box ``bounds`` allows."""
    if bounds is None:
        return torch.full((images.shape[0],), math.inf, device=images.device)
    low, high = bounds
    return lp_norms(torch.maximum(images - low, high - images), norm)


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
        return _worst_norm(images, self.bounds, self.norm)

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


class DDNRadius(StepCallback):
    """DDN's norm, per image: after each backward ``ε ← ε·(1 − γ)`` where the scored image is adversarial and
    ``ε·(1 + γ)`` where it is not (never beyond the largest perturbation the box allows); after each step the
    perturbation is rescaled onto the sphere of radius ``ε`` (not the ball: a short step is lengthened) and the
    image clamped into the box, as Rony et al. do.

    Args:
        param: the pixels being optimized (unconstrained: this callback projects them).
        clean: the clean images.
        init_epsilon: the first radius.
        gamma: the factor of the radius update.
        worst: ``(B,)`` the largest perturbation the box allows.
        bounds: the box ``(low, high)``, or ``None``.
    """

    def __init__(self, param: ImageParam, clean: Tensor, init_epsilon: float, gamma: float, worst: Tensor,
                 bounds: tuple[float, float] | None) -> None:
        self.param, self.clean, self.gamma, self.worst, self.bounds = param, clean, gamma, worst, bounds
        self.radius = torch.full_like(worst, init_epsilon)

    @torch.no_grad()
    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        factor = torch.where(terms["done"], 1 - self.gamma, 1 + self.gamma)
        self.radius = torch.minimum(self.radius * factor, self.worst)

    @torch.no_grad()
    def on_step_end(self, record: RunRecord, step: int) -> None:
        pixels = self.param.tensor
        delta = pixels - self.clean
        length = delta.flatten(1).norm(dim=1).clamp_min(1e-12)  # a zero perturbation stays zero
        images = self.clean + delta * (self.radius / length).view(-1, *[1] * (delta.ndim - 1))
        pixels.copy_(images if self.bounds is None else images.clamp(*self.bounds))


class DDN(Attack):
    """Decoupled Direction and Norm (Rony et al., CVPR 2019): an L2 minimal-norm attack.

    Each step moves the perturbation along the normalized gradient of the loss (cross-entropy by default), with
    a step length decaying from 1 to 0.01 (cosine), then rescales it onto a sphere whose radius ``ε`` decreases
    by a factor ``1 − γ`` while the image is adversarial and increases by ``1 + γ`` while it is not (the
    direction and the norm are decoupled: :class:`DDNRadius`). The result is the smallest adversarial
    perturbation seen (:class:`~inputopt.record.SmallestNorm`), the final images included. It runs on
    :func:`~inputopt.engine.optimize`.

    A row whose gradient is exactly zero takes no step, only the radius update (Rony et al. and Foolbox draw a
    random direction there: this attack stays deterministic instead).

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        steps: the number of steps.
        init_epsilon: the first radius of the sphere.
        gamma: the factor of the radius update, in ``(0, 1)``.
        eps: ``None`` for the minimal perturbations, or budgets to evaluate them at.
        **kwargs: ``loss`` (default ``"ce"``), ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict`` of
            :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = DDN("digits", steps=30).run(images, labels)[0]
        >>> bool(result.success.all()), bool((result.norms < 5).all())
        (True, True)
    """

    minimal = True

    def __init__(self, model: str | nn.Module, steps: int = 100, init_epsilon: float = 1.0, gamma: float = 0.05,
                 eps: float | Sequence[float] | None = None, **kwargs: Any) -> None:
        if kwargs.get("norm", "L2") != "L2":
            raise ValueError(f"DDN is an L2 attack; got norm={kwargs['norm']!r}")
        kwargs.pop("norm", None)
        super().__init__(model, eps=eps, norm="L2", **kwargs)
        self.steps = _positive_int(steps, "steps")
        self.init_epsilon = _positive(init_epsilon, "init_epsilon")
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma!r}")
        self.gamma = float(gamma)

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is not None:
            raise ValueError("DDN starts from the clean images; it takes no start")
        param = PixelImage().to(images.device).initialize_from(images)  # DDNRadius projects after each step
        worst = _worst_norm(images, self.bounds, "L2")
        radius = DDNRadius(param, images, self.init_epsilon, self.gamma, worst, self.bounds)
        step = partial(NormalizedGradient, lr=1.0)
        schedule = partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=self.steps, eta_min=0.01)
        return optimize(param, path, self.steps, step, targets, callbacks=[radius, *callbacks], scheduler=schedule,
                        track_done=True, best=SmallestNorm(images, "L2"))


class DeepFool(Attack):
    """DeepFool (Moosavi-Dezfooli et al., CVPR 2016): an untargeted minimal-norm attack in L2 or L∞.

    Each step linearizes the network at the current image. For each candidate class ``k`` (the ``candidates − 1``
    classes of highest clean logit other than the label ``y``), ``f_k = z_k − z_y`` and ``w_k = ∇f_k``; the
    closest linearized boundary is ``k* = argmin_k |f_k| / ‖w_k‖_dual`` and the step onto it is
    ``d / ‖w_k*‖₂ · w_k*`` (L2) or ``d · sign(w_k*)`` (L∞), with ``d = |f_k*| / ‖w_k*‖_dual + 10⁻⁴`` (the
    paper's code and Foolbox add 10⁻⁴: without it an image can settle exactly on the boundary, a tie that is
    not adversarial). The image moves by ``1 + overshoot`` times the step and is clipped into the box:
    ``x ← clip(x + (1 + overshoot)·r)``, as torchattacks does (Foolbox adds the steps up and clips
    ``x0 + (1 + overshoot)·Σr``, whose part beyond the box the later steps must undo: on 200 held-out digits its
    median L2 is 0.2 % larger). An image stops once it is adversarial. An image never adversarial gives back its clean image (``success`` False), as FMN and CW do.

    Not a run of :func:`~inputopt.engine.optimize`: a step needs the gradients of ``candidates − 1`` logit
    differences, not of one loss. The loop below computes them for the whole batch at once (one backward per
    candidate class, on the images not yet adversarial; never a loop over images) and returns the same
    :class:`~inputopt.record.RunRecord`, calling the callbacks' hooks at the same points.

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        norm: ``"L2"`` or ``"Linf"``.
        steps: the largest number of steps.
        overshoot: how far past the linearized boundary each image is pushed (``1 + overshoot`` times the steps).
        candidates: the number of classes considered, the label included (at most the network's classes).
        eps: ``None`` for the minimal perturbations, or budgets to evaluate them at.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = DeepFool("digits", steps=20).run(images, labels)[0]
        >>> bool(result.success.all()), bool((result.norms < 5).all())
        (True, True)
    """

    minimal = True

    def __init__(self, model: str | nn.Module, norm: Norm = "L2", steps: int = 50, overshoot: float = 0.02,
                 candidates: int = 10, eps: float | Sequence[float] | None = None, **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("DeepFool works on the logit differences; it takes no loss argument")
        super().__init__(model, eps=eps, norm=norm, loss="margin", **kwargs)
        self.steps = _positive_int(steps, "steps")
        if isinstance(overshoot, bool) or not isinstance(overshoot, (int, float)) or not 0 <= overshoot < math.inf:
            raise ValueError(f"overshoot must be a finite number >= 0, got {overshoot!r}")
        self.overshoot = float(overshoot)
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
            raise ValueError(f"candidates must be an int >= 2 (the label and at least one other class), "
                             f"got {candidates!r}")
        self.candidates = candidates

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is not None:
            raise ValueError("DeepFool starts from the clean images; it takes no start")
        if path.objective.targeted:
            raise ValueError("DeepFool is untargeted (it moves each image to the closest other class): give labels, "
                             "not target")
        low, high = self.bounds if self.bounds is not None else (-math.inf, math.inf)
        with torch.no_grad():
            logits = _check_finite_logits(path.activations(images, [""])[""].float(), "images")
        others = min(self.candidates, logits.shape[1]) - 1
        classes = logits.scatter(1, targets.view(-1, 1), -math.inf).topk(others, dim=1).indices  # (B, K)
        record = RunRecord.start(images)
        for callback in callbacks:
            callback.on_start(record)
        x = images.clone()
        done = torch.zeros_like(record.done)
        for step in range(self.steps + 1):  # the last pass only scores the final images
            rows = (~done).nonzero().flatten()
            if not len(rows):
                break
            current = x[rows].requires_grad_(True)
            with torch.enable_grad():
                z = _check_finite_logits(path.activations(current, [""])[""].float(), "the images of a step")
                f = z.gather(1, classes[rows]) - z.gather(1, targets[rows].view(-1, 1))  # (R, K) < 0 until adversarial
                adversarial = z.argmax(1) != targets[rows]
                done[rows[adversarial]] = True
                record.first_success[rows[adversarial]] = step
                if step == self.steps or adversarial.all():
                    continue
                grads = [torch.autograd.grad(f[:, k].sum(), current, retain_graph=k < others - 1)[0]
                         for k in range(others)]
            with torch.no_grad():
                self._step(record, callbacks, step, x, rows, adversarial, f.detach(),
                           torch.stack(grads, 1).flatten(2), low, high)
        record.done = done
        record.best_score = torch.where(done, -lp_norms(x - images, self.norm), -math.inf)
        record.best = torch.where(done.view(-1, 1, 1, 1), x, images)  # never adversarial: the clean image
        record.images, record.scored = x.detach(), x.detach()
        for callback in callbacks:
            callback.on_end(record)
        return record

    def _step(self, record: RunRecord, callbacks: Sequence[StepCallback], step: int, x: Tensor, rows: Tensor,
              adversarial: Tensor, f: Tensor, w: Tensor, low: float, high: float) -> None:
        """One update of the rows ``rows`` not ``adversarial``: ``f`` ``(R, K)`` the logit differences, ``w``
        ``(R, K, D)`` their gradients."""
        record.scored = x.clone()
        for callback in callbacks:
            callback.on_after_backward(record, step, {"done": record.first_success >= 0})
        dual = w.norm(dim=2) if self.norm == "L2" else w.abs().sum(2)
        distance = f.abs() / (dual + 1e-8)
        closest = distance.argmin(1)
        pick = torch.arange(len(rows), device=rows.device)
        distance, w = distance[pick, closest] + 1e-4, w[pick, closest]  # (R,), (R, D); 1e-4: past a tie
        if self.norm == "L2":
            r = (distance / (w.norm(dim=1) + 1e-8)).unsqueeze(1) * w
        else:
            r = distance.unsqueeze(1) * w.sign()
        move = rows[~adversarial]
        x[move] = (x[move] + (1 + self.overshoot) * r[~adversarial].view(-1, *x.shape[1:])).clamp(low, high)
        record.steps[move] += 1
        for callback in callbacks:
            callback.on_step_end(record, step)
