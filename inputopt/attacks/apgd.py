"""Auto-PGD (Croce and Hein 2020): PGD with momentum and a step size that adapts per image, without tuning.

APGD runs on the shared step engine (:func:`~inputopt.engine.optimize`): the step rule is an optimizer
with per-row state (:class:`APGDStep`: per-image step size, previous point, momentum) and the schedule is
a callback (:class:`APGDSchedule`) that, after each backward, keeps each image's best point and, at the
checkpoints, halves the step size of the images whose loss stalled and moves them back to their best point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from inputopt.attacks.base import Attack
from inputopt.attacks.gradient import _positive_int
from inputopt.functional.random import RowRandom
from inputopt.functional.projection import Norm
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.objectives.classification import TargetedDLR
from inputopt.params.base import ImageParam
from inputopt.params.pixel import PixelImage
from inputopt.record import HighestScore, RunRecord, StepCallback

__all__ = ["APGD", "APGDSchedule", "APGDStep", "APGDT", "apgd_checkpoints", "apgd_project", "apgd_start"]


def _rows(t: Tensor, ndim: int) -> Tensor:
    return t.view(-1, *[1] * (ndim - 1))


class APGDStep(Optimizer):
    """The APGD step with momentum, per row: ``z = P(x + η·d(∇))``, ``x ← P(x + (z − x)·α + (x − x_prev)·(1 − α))``.

    ``d`` is the gradient's sign (L∞) or the gradient divided by its L2 norm (+ 1e-12) (L2); ``P`` the projection
    onto the ε-ball and the box (:func:`apgd_project`); ``α`` is 1 at the first step (where ``x_prev = x``) and
    ``momentum`` (0.75 in the paper) after. Every row has its own step size ``η`` (:attr:`lr`, a ``(B,)`` tensor
    a schedule may change) and its own previous point. The operations are the reference implementation's
    (Croce and Hein's ``autopgd_base.py``), in its order, so that a run follows it to the last bit. Like every
    ``torch.optim`` optimizer it descends: the loss path's loss is ``−objective``.

    Args:
        params: one tensor of images ``(B, C, H, W)`` (pixels).
        lr: the initial step size, a number or ``(B,)``.
        project: the projection ``P`` (images → images).
        norm: ``"Linf"`` or ``"L2"``.
        momentum: ``α`` after the first step.

    Example:
        >>> x = torch.nn.Parameter(torch.zeros(2, 1, 1, 2))
        >>> opt = APGDStep([x], lr=torch.tensor([0.1, 0.2]), project=lambda v: v.clamp(-1, 1))
        >>> x.grad = torch.tensor([[[[1.0, -1.0]]], [[[-3.0, 0.0]]]])
        >>> opt.step()
        >>> x.data.flatten(1)
        tensor([[-0.1000,  0.1000],
                [ 0.2000,  0.0000]])
    """

    def __init__(self, params: Iterable[Tensor], lr: float | Tensor, project: Callable[[Tensor], Tensor],
                 norm: Norm = "Linf", momentum: float = 0.75) -> None:
        params = list(params)
        if len(params) != 1:
            raise ValueError(f"APGDStep optimizes one tensor of images, got {len(params)}")
        if norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        super().__init__(params, {})
        rows = params[0].shape[0]
        lr = torch.as_tensor(lr, dtype=torch.float32, device=params[0].device)
        self.lr = (lr.expand(rows) if lr.ndim == 0 else lr).clone()
        if self.lr.shape != (rows,) or not torch.isfinite(self.lr).all() or (self.lr < 0).any():
            raise ValueError(f"lr must be finite numbers >= 0, one or one per row ({rows}), got {lr!r}")
        self.project = project
        self.norm = norm
        self.momentum = float(momentum)

    @torch.no_grad()
    def step(self, closure=None):
        p = self.param_groups[0]["params"][0]
        if p.grad is None:
            return None
        state = self.state[p]
        x = p.detach().clone()
        grad = p.grad
        # descend the loss: move against the gradient
        if self.norm == "Linf":
            direction = -grad.sign()
        else:
            direction = -grad / (_l2(grad) + 1e-12)
        z = self.project(x + _rows(self.lr.to(x), x.ndim) * direction)
        a = self.momentum if "previous" in state else 1.0
        previous = state.get("previous", x)
        z = self.project(x + (z - x) * a + (x - previous) * (1 - a))
        state["previous"] = x
        p.copy_(z)
        return None


def _l2(t: Tensor) -> Tensor:
    """Each row's L2 norm, ``(B, 1, ..., 1)``, computed as the reference implementation does (``sqrt(sum(t²))``)."""
    return _rows((t ** 2).flatten(1).sum(-1).sqrt(), t.ndim)


def apgd_project(x: Tensor, center: Tensor, eps: float, norm: Norm = "Linf",
                 bounds: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """APGD's projection onto the ε-ball around ``center`` and the box, in the reference implementation's
    arithmetic: L∞ ``min(max(x, center − ε), center + ε)`` (a point inside the ball is returned unchanged, to the
    bit); L2 ``center + d / (‖d‖ + 1e-12) · min(ε, ‖d‖)`` with ``d = x − center``; then clamped to ``bounds``.

    Example:
        >>> apgd_project(torch.tensor([[0.9, 0.3, 0.05]]), torch.full((1, 3), 0.2), eps=0.1)
        tensor([[0.3000, 0.3000, 0.1000]])
    """
    if norm == "Linf":
        x = torch.min(torch.max(x, center - eps), center + eps)
    else:
        d = x - center
        length = _l2(d)
        x = center + d / (length + 1e-12) * torch.clamp(length, max=eps)
    return x if bounds is None else x.clamp(*bounds)


def apgd_checkpoints(steps: int) -> tuple[int, int, int]:
    """``(first, decrease, minimum)``: the first checkpoint comes after ``first`` steps, each next one
    ``decrease`` steps sooner than the last, but never less than ``minimum`` apart (22 %, 3 % and 6 % of
    ``steps`` in the paper).

    Example:
        >>> apgd_checkpoints(100)
        (22, 3, 6)
    """
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


class APGDSchedule(StepCallback):
    """The APGD step-size schedule, a step-engine callback: checkpoints, and restarts from the best point.

    After each backward it reads the run's record: each image's best point (the record keeps the point of
    highest objective, :class:`~inputopt.record.HighestScore`) and whether it just improved, whose gradient the
    schedule keeps. At each checkpoint, an image whose objective rose in at most ``rho`` of the steps since the
    last checkpoint, or whose best did not improve since the last checkpoint while its step size was not just
    halved, gets its step size (the record's ``step_sizes``, which :class:`APGDStep` reads) halved and goes back
    to its best point (with the gradient there). Images already adversarial (``record.done``) are left alone.

    Args:
        param: the image parameterization being optimized.
        steps: the number of steps of the run.
        rho: the fraction of rising steps below which a step size is halved (0.75).
    """

    def __init__(self, param: ImageParam, steps: int, rho: float = 0.75) -> None:
        self.param = param
        self.rho = rho
        self.period, self.decrease, self.minimum = apgd_checkpoints(steps)
        self.since = 0  # steps since the last checkpoint
        self.best_grad: Tensor | None = None
        self.rises: Tensor | None = None
        self.previous: Tensor | None = None
        self.best_at_check: Tensor | None = None
        self.reduced: Tensor | None = None

    @torch.no_grad()
    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        value = terms["objective"].float()
        grad = self.param.tensor.grad
        if self.best_grad is None:
            # the first step's rise is counted against 0, not against the start's value: what the reference
            # implementation (Croce and Hein's, and torchattacks') does, whose loss history starts at zeros
            self.best_grad, self.previous = grad.clone(), torch.zeros_like(value)
            self.rises = torch.zeros_like(value)
            self.best_at_check = record.best_score.clone()
            self.reduced = torch.ones_like(value, dtype=torch.bool)
            return
        self.best_grad[record.improved] = grad[record.improved]
        self.rises += (value > self.previous).float()
        self.previous = value.clone()
        self.since += 1
        if self.since < self.period:
            return
        halve = (self.rises <= self.period * self.rho) | (~self.reduced & (self.best_at_check >= record.best_score))
        self.reduced = halve
        halve = halve & ~record.done  # adversarial images stop: they are never sent back to their best point
        self.best_at_check = record.best_score.clone()
        if halve.any():
            record.step_sizes[halve] /= 2
            self.param.set_images_(record.best, rows=halve)
            grad[halve] = self.best_grad[halve]
        self.since = 0
        self.rises.zero_()
        self.period = max(self.period - self.decrease, self.minimum)


def apgd_start(images: Tensor, eps: float, norm: Norm, keys: Sequence[int], seed: int, restart: int = 0) -> Tensor:
    """APGD's random start, seeded per image by ``(seed, key, restart)`` (the stream ``"apgd.start"``): a random
    point on the sphere of the ε-ball (L∞: uniform noise scaled so that its largest element is ±ε; L2: a random
    direction of length ε).

    Example:
        >>> start = apgd_start(torch.zeros(2, 1, 4, 4), 0.1, "Linf", keys=[0, 1], seed=0)
        >>> start.flatten(1).abs().amax(1)
        tensor([0.1000, 0.1000])
    """
    rows = []
    stream = RowRandom(seed).stream("apgd.start")
    for key in keys:
        generator = stream.generator(key, restart)
        if norm == "Linf":
            t = torch.rand(images.shape[1:], generator=generator) * 2 - 1
            rows.append(t / (t.abs().amax() + 1e-12))
        else:
            t = torch.randn(images.shape[1:], generator=generator)
            rows.append(t / ((t ** 2).sum().sqrt() + 1e-12))
    return images + eps * torch.stack(rows).to(images)


class APGD(Attack):
    """Auto-PGD (Croce and Hein 2020): PGD with momentum and a per-image step size that halves at checkpoints.

    From a random point on the ε-sphere, ``steps`` steps of :class:`APGDStep` (initial step size 2ε,
    momentum 0.75) under the :class:`APGDSchedule`. Each image keeps its first adversarial point (it then
    stops moving), else its point of highest loss. With ``restarts`` > 1, the images still robust are
    attacked again from another random start (seeded by ``(seed, restart, key)``).

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        eps: the budget, or a list of budgets (one result per ε).
        steps: the number of steps per restart.
        norm: ``"Linf"`` or ``"L2"``.
        loss: ``"ce"`` (APGD-CE), ``"dlr"`` (APGD-DLR) or any registered loss.
        restarts: the number of random starts.
        rho: the fraction of rising steps below which a checkpoint halves the step size.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = APGD("digits", eps=0.1, steps=10).run(images, labels)[0]
        >>> bool((result.norms <= 0.1 + 1e-6).all()), result.success.shape
        (True, torch.Size([8]))
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, steps: int = 100,
                 norm: Norm = "Linf", loss: str = "ce", restarts: int = 1, rho: float = 0.75,
                 **kwargs: Any) -> None:
        super().__init__(model, eps=eps, norm=norm, loss=loss, **kwargs)
        if not self.epsilons:
            raise ValueError("APGD needs a budget eps")
        self.steps = _positive_int(steps, "steps")
        self.restarts = _positive_int(restarts, "restarts")
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho < 1:
            raise ValueError(f"rho must be a number in (0, 1), got {rho!r}")
        self.rho = float(rho)

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        record = RunRecord.start(images if start is None else self.param(images, eps, start)())
        with torch.no_grad():
            robust = ~path.objective.is_done(path.activations(record.best, [""]), targets)
        record.first_success[~robust] = 0
        for restart in range(self.restarts):
            rows = robust.nonzero().flatten()
            if not len(rows):
                break
            first = start[rows] if (start is not None and restart == 0) else None
            run = self.single_run(path, images[rows], targets[rows], eps, [keys[i] for i in rows.tolist()], restart,
                                  first, callbacks if restart == 0 else ())
            self.merge(record, run, rows, restart == 0, restart * self.steps)
            robust[rows[run.done]] = False
        return record.finish(record.best, None)

    @staticmethod
    def merge(record: RunRecord, run: RunRecord, rows: Tensor, first_run: bool, steps_before: int) -> None:
        """Put a run on ``rows`` into the whole batch's record: the images it broke (after ``steps_before`` steps
        of earlier runs), and, from the first run, its best points for the images no run broke."""
        keep = run.done | first_run
        record.best[rows[keep]] = run.best[keep]
        broken = rows[run.done]
        record.first_success[broken] = run.first_success[run.done] + steps_before
        record.done[broken] = True
        record.steps[rows] += run.steps
        if first_run:
            record.history = run.history

    def single_run(self, path: LossPath, images: Tensor, targets: Tensor, eps: float, keys: Sequence[int],
                   restart: int, start: Tensor | None = None, callbacks: Sequence[StepCallback] = ()) -> RunRecord:
        """One run of APGD on ``images`` (all rows attacked). Its record's ``best`` are the final images where
        they are adversarial (``done``), else the points of highest loss."""
        if start is None:
            start = apgd_start(images, eps, self.norm, keys, self.seed, restart)
        project = partial(apgd_project, center=images, eps=eps, norm=self.norm, bounds=self.bounds)
        # the step projects onto the ball itself (apgd_project); the parameterization only keeps the box, which
        # leaves the step's points as they are (a second projection onto the ball could move them by a rounding)
        param = PixelImage(clamp=self.bounds).to(images.device).initialize_from(images)
        param.set_images_(project(start.to(images)))
        # ``steps`` steps: the points x_0 (the start) .. x_{steps-1} are scored with their gradient, the last
        # point x_steps is scored by the run's end (no gradient): the reference implementation's steps + 1 points
        record = optimize(param, path, self.steps, partial(APGDStep, lr=2 * eps, project=project, norm=self.norm),
                          targets, callbacks=[APGDSchedule(param, self.steps, self.rho), *callbacks],
                          freeze_done=True, best=HighestScore())
        record.best = torch.where(_rows(record.done, record.images.ndim), record.images, record.best)
        return record


class APGDT(APGD):
    """APGD-T (Croce and Hein 2020): targeted APGD with the targeted DLR loss, over the top classes.

    For each of the ``target_classes`` classes ranked highest after the true one on the clean image
    (second, third, …), the images still robust are attacked with :class:`APGD` towards that class
    (loss :class:`~inputopt.objectives.TargetedDLR`); an image counts as broken once it is misclassified
    into any class. The result is untargeted: its labels are the true labels.

    Args:
        model: the classifier.
        eps: the budget, or a list of budgets.
        steps: the number of steps per target class and restart.
        norm: ``"Linf"`` or ``"L2"``.
        target_classes: how many target classes to try (9 in AutoAttack for 10 classes).
        restarts: random starts per target class.
        rho: see :class:`APGD`.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:4] for t in load_digits_split("test"))
        >>> APGDT("digits", eps=0.1, steps=5, target_classes=2)(images, labels).shape
        torch.Size([4, 1, 32, 32])
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, steps: int = 100,
                 norm: Norm = "Linf", target_classes: int = 9, restarts: int = 1, rho: float = 0.75,
                 **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("APGDT's loss is the targeted DLR loss; it takes no loss argument")
        super().__init__(model, eps=eps, steps=steps, norm=norm, loss="ce", restarts=restarts, rho=rho, **kwargs)
        self.target_classes = _positive_int(target_classes, "target_classes")

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if path.objective.targeted:
            raise ValueError("APGDT chooses its own target classes: call it without target")
        with torch.no_grad():
            logits = path.activations(images, [""])[""]
        if self.target_classes > logits.shape[1] - 1:
            raise ValueError(f"target_classes must be at most the number of classes - 1 = {logits.shape[1] - 1}, "
                             f"got {self.target_classes}")
        ranked = logits.argsort(dim=1)
        record = RunRecord.start(images)
        robust = logits.argmax(1) == targets
        record.first_success[~robust] = 0
        for rank in range(2, self.target_classes + 2):
            for restart in range(self.restarts):
                rows = robust.nonzero().flatten()
                if not len(rows):
                    break
                aim = ranked[rows, -rank]
                objective = TargetedDLR(labels=targets[rows].tolist(), target=aim.tolist())
                targeted = LossPath(path.network, objective, normalize=path.normalize)
                pairs = torch.stack([targets[rows], aim], 1)
                run = self.single_run(targeted, images[rows], pairs, eps, [keys[i] for i in rows.tolist()],
                                      restart + self.restarts * rank)
                runs = (rank - 2) * self.restarts + restart
                self.merge(record, run, rows, False, runs * self.steps)
                robust[rows[run.done]] = False
        return record.finish(record.best, None)
