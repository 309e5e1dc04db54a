"""The Square attack (Andriushchenko et al. 2020): a score-based black-box attack by random square updates.

It needs the network's scores only, no gradient, so gradient masking cannot fool it: the check that a
white-box evaluation was not fooled. Every random draw of image ``i`` comes from its own generator,
seeded by ``(seed, key i)``: an image gets the same squares whatever batch it is in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.attacks.base import Attack, _check_finite_logits
from inputopt.attacks.gradient import _positive_int
from inputopt.functional.random import RowRandom
from inputopt.functional.projection import Norm
from inputopt.loss import LossPath
from inputopt.record import RunRecord, StepCallback

__all__ = ["Square", "square_fraction"]

_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def square_fraction(query: int, queries: int, p_init: float = 0.8) -> float:
    """The fraction of the image a square covers at ``query`` of ``queries``: ``p_init`` halved at fixed
    points of a 10,000-query schedule, rescaled to ``queries``.

    Example:
        >>> square_fraction(0, 5000), square_fraction(4999, 5000)
        (0.8, 0.0015625)
    """
    it = int(query / queries * 10000)
    divisor = 512
    for end, d in _SCHEDULE:
        if it <= end:
            divisor = d
            break
    return p_init / divisor


def _window_pattern(s: int) -> Tensor:
    """The L2 update of a square of side ``s``: two rectangles of opposite sign, each a sum of nested squares
    of weight 1/k² (a pseudo-Gaussian), unit L2 norm."""
    def rectangles(rows: int, cols: int) -> Tensor:
        delta = torch.zeros(rows, cols)
        r, c = rows // 2, cols // 2
        for k in range(max(r + 1, c + 1)):
            delta[max(r - k, 0):min(r - k + 2 * k + 1, rows), max(c - k, 0):min(c - k + 2 * k + 1, cols)] += 1 / (k + 1) ** 2
        return delta / delta.norm().clamp_min(1e-12)

    delta = torch.cat([rectangles(s // 2, s), -rectangles(s - s // 2, s)]) if s > 1 else torch.ones(1, 1)
    return delta / delta.norm().clamp_min(1e-12)


class Square(Attack):
    """The Square attack (Andriushchenko et al. 2020): random square updates kept when they lower the margin.

    L∞: start from vertical stripes of ±ε; at each query, a random square of side ``√(p·H·W)`` gets a
    random ±ε per channel, kept if it lowers the margin ``z_y − max_{j≠y} z_j`` (or misclassifies).
    L2: start from a grid of pseudo-Gaussian squares of total length ε; each query moves the perturbation
    mass of a second random window into a first. The fraction ``p`` shrinks along a fixed schedule
    (:func:`square_fraction`). An image stops once it is misclassified; each query is one forward of the
    images still robust.

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        eps: the budget, or a list of budgets.
        queries: the query budget per image (the starting point counts as the first).
        norm: ``"Linf"`` or ``"L2"``.
        p_init: the initial fraction of the image a square covers.
        loss: ``"margin"`` (the margin itself) or ``"ce"`` (the cross-entropy) is what a square must lower.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> result = Square("digits", eps=0.2, queries=50).run(images, labels)[0]
        >>> bool((result.norms <= 0.2 + 1e-6).all())
        True
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, queries: int = 5000,
                 norm: Norm = "Linf", p_init: float = 0.8, loss: str = "margin", **kwargs: Any) -> None:
        if loss not in ("margin", "ce"):
            raise ValueError(f"Square's loss must be 'margin' or 'ce', got {loss!r}")
        super().__init__(model, eps=eps, norm=norm, loss=loss, **kwargs)
        if not self.epsilons:
            raise ValueError("Square needs a budget eps")
        self.queries = _positive_int(queries, "queries")
        self.steps = self.queries
        if isinstance(p_init, bool) or not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
            raise ValueError(f"p_init must be a number in (0, 1], got {p_init!r}")
        self.p_init = float(p_init)

    def _scores(self, path: LossPath, images: Tensor, targets: Tensor, targeted: bool) -> tuple[Tensor, Tensor]:
        """``(margin, loss)`` per image: the margin is ≤ 0 once the image is adversarial; the loss is what the
        attack lowers."""
        logits = _check_finite_logits(path.activations(images, [""])[""].float(), "images")
        own = logits.gather(1, targets.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, targets.view(-1, 1), float("-inf")).amax(1)
        margin = other - own if targeted else own - other
        if self.loss == "margin":
            return margin, margin
        ce = F.cross_entropy(logits, targets, reduction="none")
        return margin, ce if targeted else -ce

    def _draws(self, keys: Sequence[int], channels: int, device: torch.device) -> Tensor:
        """``(B, queries + 1, 5 + C)`` uniform numbers: row ``i`` from its own generator, seeded by ``(seed, key)``."""
        return RowRandom(self.seed).stream("square.queries").uniform(keys, (self.queries + 1, 5 + channels)).to(device)

    @torch.no_grad()
    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        targeted = path.objective.targeted
        batch, channels, height, width = images.shape
        draws = self._draws(keys, channels, images.device)
        low, high = self.bounds if self.bounds is not None else (-math.inf, math.inf)
        signs = (draws[:, 0, 5:] > 0.5).float() * 2 - 1  # (B, C)
        if start is not None:
            best = self._project(images, start.to(images), eps, low, high)
        elif self.norm == "Linf":
            stripes = self._row_stripes(keys, channels, width, images.device)
            best = (images + eps * stripes).clamp(low, high)
        else:
            best = (images + eps * self._l2_start(images, signs)).clamp(low, high)
        margin, loss = self._scores(path, best, targets, targeted)
        first = torch.where(margin <= 0, 0, -1)
        record = RunRecord.start(images)  # what the callbacks see: each query is a step
        record.done = margin <= 0
        for callback in callbacks:
            callback.on_start(record)
        pixels = height * width
        for query in range(1, self.queries):
            rows = ((margin > 0) & record.active).nonzero().flatten()
            if not len(rows):
                break
            p = square_fraction(query - 1, self.queries, self.p_init)
            x, current = images[rows], best[rows]
            u = draws[rows, query]
            if self.norm == "Linf":
                s = min(max(int(round(math.sqrt(p * pixels))), 1), height, width)
                mask = self._windows(u[:, 0], u[:, 1], s, height, width)
                sign = (u[:, 5:] > 0.5).float() * 2 - 1
                candidate = torch.where(mask, current + 2 * eps * sign.view(-1, channels, 1, 1), current)
                candidate = self._project(x, candidate, eps, low, high)
            else:
                candidate = self._l2_query(x, current, u, p, eps, low, high)
            new_margin, new_loss = self._scores(path, candidate, targets[rows], targeted)
            improved = new_loss < loss[rows]
            loss[rows] = torch.where(improved, new_loss, loss[rows])
            keep = improved | (new_margin <= 0)
            margin[rows] = torch.where(keep, new_margin, margin[rows])
            best[rows] = torch.where(keep.view(-1, 1, 1, 1), candidate, current)
            broken = rows[new_margin <= 0]
            first[broken] = query
            record.done = margin <= 0
            for callback in callbacks:
                callback.on_step_end(record, query - 1)
        record.best, record.first_success, record.done = best, first, margin <= 0
        record.steps = torch.where(first >= 0, first, self.queries - 1)  # queries after the start
        record.finish(best, None)
        for callback in callbacks:
            callback.on_end(record)
        return record

    def _row_stripes(self, keys: Sequence[int], channels: int, width: int, device: torch.device) -> Tensor:
        """The L∞ start: a random ±1 per channel and column (vertical stripes), seeded per image."""
        stripes = RowRandom(self.seed).stream("square.stripes").uniform(keys, (channels, 1, width))
        return (stripes.to(device) > 0.5).float() * 2 - 1

    def _project(self, x: Tensor, candidate: Tensor, eps: float, low: float, high: float) -> Tensor:
        if self.norm == "Linf":
            return torch.min(torch.max(candidate, x - eps), x + eps).clamp(low, high)
        delta = candidate - x
        length = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return (x + delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)).clamp(low, high)

    @staticmethod
    def _windows(uh: Tensor, uw: Tensor, s: int, height: int, width: int) -> Tensor:
        """``(B, 1, H, W)`` bool: a square of side ``s`` per image at the corner ``(⌊uh·(H − s)⌋, ⌊uw·(W − s)⌋)``."""
        top, left = (uh * (height - s)).long(), (uw * (width - s)).long()
        r = torch.arange(height, device=uh.device)
        c = torch.arange(width, device=uh.device)
        inside_r = (r >= top.view(-1, 1)) & (r < (top + s).view(-1, 1))
        inside_c = (c >= left.view(-1, 1)) & (c < (left + s).view(-1, 1))
        return (inside_r[:, :, None] & inside_c[:, None, :]).unsqueeze(1)

    @staticmethod
    def _place(pattern: Tensor, mask: Tensor, uh: Tensor, uw: Tensor, s: int) -> Tensor:
        """``pattern`` ``(B, C, s, s)`` placed in each image's window (zeros elsewhere)."""
        batch, channels = pattern.shape[:2]
        height, width = mask.shape[-2:]
        top, left = (uh * (height - s)).long(), (uw * (width - s)).long()
        ii = (torch.arange(height, device=pattern.device).view(1, -1) - top.view(-1, 1)).clamp(0, s - 1)
        jj = (torch.arange(width, device=pattern.device).view(1, -1) - left.view(-1, 1)).clamp(0, s - 1)
        b = torch.arange(batch, device=pattern.device).view(-1, 1, 1, 1)
        c = torch.arange(channels, device=pattern.device).view(1, -1, 1, 1)
        placed = pattern[b, c, ii.view(batch, 1, height, 1), jj.view(batch, 1, 1, width)]
        return placed * mask

    def _l2_start(self, images: Tensor, signs: Tensor) -> Tensor:
        """A grid of pseudo-Gaussian squares of side H/5 with a random sign per image and channel, unit length."""
        batch, channels, height, width = images.shape
        s = max(height // 5, 1)
        pattern = _window_pattern(s).to(images)
        delta = torch.zeros_like(images)
        top = (height - s * 5) // 2 if height >= 5 else 0
        for i in range(max(height // s, 1)):
            left = (width - s * 5) // 2 if width >= 5 else 0
            for j in range(max(width // s, 1)):
                r, c = top + i * s, left + j * s
                if r + s <= height and c + s <= width:
                    delta[:, :, r:r + s, c:c + s] += pattern * signs.view(batch, channels, 1, 1)
        return delta / delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def _l2_query(self, x: Tensor, current: Tensor, u: Tensor, p: float, eps: float, low: float,
                  high: float) -> Tensor:
        """One L2 candidate: the mass of window 2 moves into window 1, with a new pseudo-Gaussian update there."""
        batch, channels, height, width = x.shape
        s = max(int(round(math.sqrt(p * height * width))), 3)
        s = min(s + 1 if s % 2 == 0 else s, height, width)
        delta = current - x
        first = self._windows(u[:, 0], u[:, 1], s, height, width)
        second = self._windows(u[:, 2], u[:, 3], s, height, width)
        image_norm = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        window_norm = (delta * (first | second)).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        first_norm = (delta * first).pow(2).sum((-2, -1), keepdim=True).sqrt()  # per channel
        pattern = _window_pattern(s).to(x)
        flip = (u[:, 4] > 0.5).view(-1, 1, 1, 1)
        pattern = torch.where(flip, pattern.t().expand(batch, 1, s, s), pattern.expand(batch, 1, s, s))
        sign = (u[:, 5:] > 0.5).float() * 2 - 1
        update = self._place(pattern * sign.view(-1, channels, 1, 1), first, u[:, 0], u[:, 1], s)
        update = update + delta * first / (first_norm + 1e-12)
        length = ((eps ** 2 - image_norm ** 2).clamp_min(0) / channels + window_norm ** 2).sqrt()
        update = update / (update.pow(2).sum((-2, -1), keepdim=True).sqrt() + 1e-12) * length
        delta = torch.where(first, update, torch.where(second, torch.zeros_like(delta), delta))
        delta = delta / (delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-12) * eps
        return (x + delta).clamp(low, high)
