"""FAB, the fast adaptive boundary attack (Croce and Hein, ICML 2020): a minimal-norm attack by projections onto
the linearized decision boundary, and FAB-T, its targeted version over the top classes (AutoAttack's third member).

The projections onto a hyperplane within the box (:func:`project_hyperplane_box`) follow the reference
implementation (github.com/fra31/auto-attack, ``fab_projections.py``), generalized from the box [0, 1] to any
``bounds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.attacks.base import Attack, _check_finite_logits
from inputopt.attacks.gradient import _positive, _positive_int
from inputopt.functional.projection import Norm, lp_norms
from inputopt.functional.random import RowRandom
from inputopt.loss import LossPath
from inputopt.record import RunRecord, StepCallback

__all__ = ["FAB", "project_hyperplane_box"]


def _project_linf(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The smallest L∞ step ``d`` with ``w·(t + d) = b`` and ``t + d`` in [0, 1] (rows of ``t``, ``w``; the
    reference implementation's ``projection_linf``)."""
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0).to(w) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).to(w)
    d = (a - t) * (w != 0).to(w)
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):  # a binary search per row
        middle = torch.floor((lb + ub) / 2)
        index = middle.long().unsqueeze(1)
        current = indp_.gather(1, indp_.size(1) - 1 - index)
        b2 = (sb_.gather(1, index) - s_.gather(1, index) * p_.gather(1, current)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, middle, lb)
        ub = torch.where(c, ub, middle)
    lb = lb.long()
    if c_l.any():
        lmbd = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd
    lmbd = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd, d[c2]) * a[c2] + torch.max(-lmbd, d[c2]) * (1 - a[c2])
    return d * (w != 0).to(w)


def _project_l2(t: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """The smallest L2 step ``d`` with ``w·(t + d) = b`` and ``t + d`` in [0, 1] (the reference implementation's
    ``projection_l2``)."""
    w = w.clone()
    c = (w * t).sum(1) - b
    sign = 2 * (c >= 0).to(w) - 1
    w.mul_(sign.unsqueeze(1))
    c = c * sign
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = F.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w ** 2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).to(w))
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    s_, c_ = s[c2], c[c2]
    for _ in range(math.ceil(math.log2(w.shape[1]))):
        middle = torch.floor((lb + ub) / 2)
        index = middle.long().unsqueeze(1)
        above = s_.gather(1, index).squeeze(1) + c_ > 0
        lb = torch.where(above, middle, lb)
        ub = torch.where(above, ub, middle)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).to(w)
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).to(w)


def project_hyperplane_box(points: Tensor, w: Tensor, b: Tensor, norm: Norm,
                           bounds: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """Per row, the smallest step ``d`` (in ``norm``) that puts ``points + d`` on the hyperplane ``w·x = b`` and in
    the box ``bounds`` (or as close to the hyperplane as the box allows).

    Args:
        points: ``(B, D)`` the points, inside the box.
        w: ``(B, D)`` the hyperplanes' normals.
        b: ``(B,)`` their offsets.
        norm: ``"Linf"`` or ``"L2"``.
        bounds: the box ``(low, high)``.

    Example:
        >>> d = project_hyperplane_box(torch.tensor([[0.2, 0.2]]), torch.tensor([[1.0, 1.0]]), torch.tensor([1.0]),
        ...                            "L2")
        >>> d, (torch.tensor([[0.2, 0.2]]) + d).sum().item()
        (tensor([[0.3000, 0.3000]]), 1.0)
    """
    low, high = bounds
    scale = high - low  # the reference projections work in [0, 1]: the same problem, rescaled
    t = (points - low) / scale
    w_unit = w * scale
    b_unit = b - (w * low).sum(1)
    project = _project_linf if norm == "Linf" else _project_l2
    return project(t, w_unit, b_unit) * scale


class FAB(Attack):
    """FAB (Croce and Hein, ICML 2020): the minimal adversarial perturbation by projections onto the linearized
    decision boundary.

    Each step linearizes the network at the current point ``x``: of the boundaries between the label ``y`` and
    each other class ``j`` (``f_j − f_y = 0``; targeted: only the target's), it takes the closest in ``norm`` to
    ``x`` (``|f_j − f_y| / ‖∇(f_j − f_y)‖_dual``) and projects onto it, within the box, both ``x`` (step ``d₁``)
    and the clean image ``x₀`` (step ``d₂``). The next point is a convex combination biased back towards the clean
    image, ``(1 − α)(x + η d₁) + α (x₀ + η d₂)`` with ``α = min(‖d₁‖ / (‖d₁‖ + ‖d₂‖), α_max)`` and the
    overshoot ``η``. Once adversarial, the point is kept if it is the smallest so far and pulled back towards
    the clean image, ``x₀ + β (x − x₀)``. Restarts after the first start from a random point at half the
    smallest norm found (within the largest ε). All of this runs on the whole batch at once, per row.

    A step costs one forward and one backward per boundary considered. The boundaries' distances are compared as
    their gradients come, keeping only the closest: the memory is one gradient per image whatever the number of
    classes (1000 classes of 224-pixel photos: see the docs' minimal-norm section).

    - Untargeted (``run(images, labels)``): the closest boundary among all the classes (the reference
      implementation's and torchattacks'), or with ``candidates=k`` among the label's boundaries with the
      ``k − 1`` other classes of highest logit on the clean image, fixed for the run as DeepFool's: ``k − 1``
      backwards a step instead of ``classes − 1`` (on 1000 classes, 9 instead of 999 with ``candidates=10``).
    - Targeted (``run(images, labels, target=t)``): the boundary between class ``t`` and the strongest other class
      at the current point (on the clean image: the predicted class); success: classified ``t``.
    - FAB-T (``target_classes=k``, AutoAttack's member): targeted runs towards each of the ``k`` classes ranked
      highest after the label on the clean image, the result untargeted (misclassified into any class). With
      ``eps``, an image found adversarial within the smallest ε is not attacked towards the next classes, as the
      reference implementation does.

    With ``eps`` (one or several budgets), each result keeps the adversarial image where its norm is ≤ ε: one run
    gives the robust accuracy at every ε. Needs ``bounds`` (the projections are within the box).

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        norm: ``"Linf"`` or ``"L2"``.
        steps: steps per run (10 in torchattacks' ``FAB``, 100 in AutoAttack's FAB-T).
        restarts: runs per target (the first from the clean image).
        alpha_max: the largest weight of the step from the clean image.
        eta: the overshoot of the projections.
        beta: the pull back towards the clean image once adversarial.
        target_classes: ``None`` (untargeted, or the ``target`` of :meth:`run`), or ``k``: FAB-T.
        candidates: the untargeted FAB's number of classes considered, the label included, as DeepFool's
            ``candidates``; ``None`` (or at least the network's classes): every class. Not with ``target_classes``
            nor a ``target``.
        eps: ``None`` for the minimal perturbations, or budgets to evaluate them at.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = FAB("digits", norm="L2", steps=20).run(images, labels)[0]
        >>> bool(result.success.all()), bool((result.norms < 5).all())
        (True, True)
    """

    minimal = True

    def __init__(self, model: str | nn.Module, norm: Norm = "Linf", steps: int = 10, restarts: int = 1,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, target_classes: int | None = None,
                 candidates: int | None = None, eps: float | Sequence[float] | None = None, **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("FAB works on the linearized logit differences; it takes no loss argument")
        super().__init__(model, eps=eps, norm=norm, loss="ce", **kwargs)
        if self.bounds is None:
            raise ValueError("FAB projects onto the boundary within a box: give bounds (low, high)")
        self.steps_per_run = _positive_int(steps, "steps")
        self.restarts = _positive_int(restarts, "restarts")
        if self.restarts > 1 and not self.epsilons:
            raise ValueError("FAB's restarts start in the ball of the largest eps: give eps with restarts > 1")
        if not 0 <= alpha_max <= 1:
            raise ValueError(f"alpha_max must be in [0, 1], got {alpha_max!r}")
        self.alpha_max = float(alpha_max)
        self.eta = _positive(eta, "eta")
        if not 0 < beta <= 1:
            raise ValueError(f"beta must be in (0, 1], got {beta!r}")
        self.beta = float(beta)
        self.target_classes = None if target_classes is None else _positive_int(target_classes, "target_classes")
        if candidates is not None:
            if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
                raise ValueError(f"candidates must be None (every class) or an int >= 2 (the label and at least one "
                                 f"other class), got {candidates!r}")
            if self.target_classes is not None:
                raise ValueError("candidates applies to the untargeted FAB; FAB-T (target_classes) attacks its "
                                 "targets one at a time: give one of them, not both")
        self.candidates = candidates
        self.steps = self.steps_per_run * self.restarts * (self.target_classes or 1)

    # -- the linearization --------------------------------------------------------------------------
    def _closest_boundary(self, path: LossPath, x: Tensor, labels: Tensor, classes: Tensor,
                          reach: bool) -> tuple[Tensor, Tensor]:
        """``(df, w)``: ``(B,)`` the logit difference ``f_j − f_y`` and ``(B, D)`` its gradient, of the class ``j``
        of ``classes`` (``(B, M)``, each ``≠ y``) whose linearized boundary with the label ``y`` is the closest to
        ``x`` in the attack's norm: ``argmin_j |f_j − f_y| / ‖∇(f_j − f_y)‖_dual``, the first on ties. ``reach``
        (a targeted run, ``M = 1``): ``y`` is the strongest class other than the target at ``x``.

        One backward per class, each distance compared at once with the closest so far: the memory is that of
        one gradient per image, ``O(B·D)``, whatever ``M`` (stacking the ``M`` gradients took 15 GB on 1000
        classes of 224-pixel photos). A loop of single backwards: faster on a CPU than one batched backward."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = _check_finite_logits(path.activations(x, [""])[""], "images")
            num_classes = logits.shape[1]
            if reach:  # reach the target: its boundary with the strongest other class
                labels = logits.detach().scatter(1, classes, -math.inf).argmax(1)
            own = F.one_hot(labels, num_classes).to(logits)
            detached = logits.detach()
            differences = detached.gather(1, classes) - detached.gather(1, labels.unsqueeze(1))  # (B, M)
            df = w = closest = None
            for k in range(classes.shape[1]):
                (grad,) = torch.autograd.grad(logits, x, F.one_hot(classes[:, k], num_classes).to(logits) - own,
                                              retain_graph=k < classes.shape[1] - 1)
                grad = grad.flatten(1)
                dual = grad.abs().sum(1) if self.norm == "Linf" else grad.pow(2).sum(1).sqrt()
                distance = differences[:, k].abs() / (1e-12 + dual)
                if closest is None:
                    df, w, closest = differences[:, k].clone(), grad, distance
                    continue
                nearer = distance < closest  # strict: the first of equal distances stays, as argmin's
                closest = torch.where(nearer, distance, closest)
                df = torch.where(nearer, differences[:, k], df)
                w = torch.where(nearer.unsqueeze(1), grad, w)
        return df, w

    def _is_adversarial(self, path: LossPath, x: Tensor, labels: Tensor, classes: Tensor, reach: bool) -> Tensor:
        predictions = _check_finite_logits(path.activations(x, [""])[""], "images").argmax(1)
        return predictions == classes[:, 0] if reach else predictions != labels

    # -- one run ------------------------------------------------------------------------------------
    @torch.no_grad()
    def single_run(self, path: LossPath, images: Tensor, labels: Tensor, classes: Tensor, reach: bool,
                   start: Tensor | None, on_adversarial: Callable[[Tensor, Tensor, int], None]) -> None:
        """One run of FAB from ``start`` (default: the clean images) across the boundaries between ``labels`` and
        ``classes`` (``(B, M)``; ``reach``: a targeted run towards ``classes``' one column, success its class);
        ``on_adversarial(rows, x, step)`` receives every adversarial point found (after ``step + 1`` steps)."""
        x0 = images.flatten(1)
        x = (images if start is None else start).clone()
        batch = len(images)
        for step in range(self.steps_per_run):
            df, w = self._closest_boundary(path, x, labels, classes, reach)
            b = -df + (w * x.flatten(1)).sum(1)
            d = project_hyperplane_box(torch.cat((x.flatten(1), x0)), torch.cat((w, w)), torch.cat((b, b)),
                                       self.norm, self.bounds)
            sizes = lp_norms(d, self.norm).clamp_min(1e-8)
            a1, a2 = sizes[:batch], sizes[batch:]
            alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max).view(-1, *[1] * (images.ndim - 1))
            d1, d2 = d[:batch].view_as(images), d[batch:].view_as(images)
            x = ((x + self.eta * d1) * (1 - alpha) + (images + self.eta * d2) * alpha).clamp(*self.bounds)
            adversarial = self._is_adversarial(path, x, labels, classes, reach)
            if adversarial.any():
                on_adversarial(adversarial, x, step + 1)
                x = torch.where(adversarial.view(-1, *[1] * (images.ndim - 1)), images + (x - images) * self.beta, x)

    def _random_start(self, images: Tensor, radius: Tensor, keys: Sequence[int], occurrence: int) -> Tensor:
        """The reference implementation's restart: a random direction scaled to ``radius / 2`` (L∞: its largest
        entry; L2: its length), seeded per image."""
        stream = RowRandom(self.seed).stream("fab.start")
        u, v = stream.uniform(keys, (2, *images.shape[1:]), occurrence=occurrence).to(images).unbind(1)
        if self.norm == "Linf":
            t = 2 * u - 1
        else:  # a normal direction (Box-Muller)
            t = torch.sqrt(-2 * torch.log1p(-u)) * torch.cos(2 * math.pi * v)
        t = t / lp_norms(t, self.norm).clamp_min(1e-12).view(-1, *[1] * (images.ndim - 1))
        return (images + radius.view(-1, *[1] * (images.ndim - 1)) * t * 0.5).clamp(*self.bounds)

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if start is not None:
            raise ValueError("FAB starts from the clean images (its restarts at random points); it takes no start")
        targeted = path.objective.targeted
        if targeted and self.target_classes is not None:
            raise ValueError("FAB with target_classes chooses its own targets (FAB-T): call it without target")
        if targeted and self.candidates is not None:
            raise ValueError("FAB's candidates applies to the untargeted attack (a targeted run crosses the one "
                             "boundary of its target): call it without target, or without candidates")
        with torch.no_grad():
            logits = _check_finite_logits(path.activations(images, [""])[""], "images")
        predictions = logits.argmax(1)
        labels = predictions if targeted else targets  # a targeted run crosses the boundary of the predicted class
        record = RunRecord.start(images)
        best_norm = torch.full((len(images),), math.inf, device=images.device)
        found = predictions == targets if targeted else predictions != targets
        record.first_success[found] = 0
        best_norm[found] = 0.0
        record.best_score[found] = 0.0
        if self.target_classes is not None:
            if self.target_classes > logits.shape[1] - 1:
                raise ValueError(f"target_classes must be at most the number of classes - 1 = {logits.shape[1] - 1}, "
                                 f"got {self.target_classes}")
            ranked = logits.argsort(dim=1)
            aims: list[Tensor | None] = [ranked[:, -rank] for rank in range(2, self.target_classes + 2)]
        else:
            aims = [targets if targeted else None]
        num_classes = logits.shape[1]  # untargeted: the classes whose boundaries with the label are considered
        if self.candidates is None or self.candidates >= num_classes:  # every other class, from the label's next
            classes = (labels.unsqueeze(1) + torch.arange(1, num_classes, device=labels.device)) % num_classes
        else:  # the candidates − 1 other classes of highest clean logits, fixed for the run (as DeepFool's)
            classes = logits.scatter(1, labels.view(-1, 1), -math.inf).topk(self.candidates - 1, dim=1).indices
        enough = min(self.epsilons) if self.epsilons else -math.inf  # a row broken within it is done
        largest = max(self.epsilons) if self.epsilons else math.inf
        run = 0
        for aim in aims:
            for restart in range(self.restarts):
                rows = ((best_norm > enough) & (best_norm > 0)).nonzero().flatten()  # 0: adversarial already
                if not len(rows):
                    break
                steps_before = run * self.steps_per_run
                run += 1
                x = images[rows]
                begin = None
                if restart > 0:
                    radius = torch.clamp(best_norm[rows], max=largest)
                    begin = self._random_start(x, radius, [keys[i] for i in rows.tolist()], run)

                def keep(adversarial: Tensor, points: Tensor, step: int, rows: Tensor = rows, x: Tensor = x,
                         steps_before: int = steps_before) -> None:
                    norms = lp_norms(points - x, self.norm)
                    smaller = adversarial & (norms < best_norm[rows])
                    hit = rows[smaller]
                    record.best[hit] = points[smaller]
                    best_norm[hit] = norms[smaller]
                    record.best_score[hit] = -norms[smaller]
                    new = hit[record.first_success[hit] < 0]
                    record.first_success[new] = steps_before + step

                boundaries = classes[rows] if aim is None else aim[rows].unsqueeze(1)
                self.single_run(path, x, labels[rows], boundaries, targeted, begin, keep)
                record.steps[rows] += self.steps_per_run
        record.done = torch.isfinite(best_norm)
        return record.finish(record.best, None)
