"""The run record: what one run of the step engine did, per row, returned by :func:`~inputopt.engine.optimize`
and by every attack; the criteria that pick each row's best images; the callbacks that receive the record.

Pure tensor code (no Lightning). Nothing of a run is left on an object: an attack or a runner reads the
record it is given back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from inputopt.functional.projection import Norm, lp_norms

__all__ = ["Criterion", "HighestScore", "RunRecord", "SmallestNorm", "StepCallback", "StepProgress"]


class Criterion:
    """Which images of a row are its best: :meth:`score` gives each row's score at a step (higher is better,
    ``-inf`` where the images do not qualify), and the record keeps the images of the highest score seen.

    Example:
        >>> class Brightest(Criterion):
        ...     def score(self, images, terms):
        ...         return images.flatten(1).mean(1)
        >>> Brightest().score(torch.ones(2, 1, 2, 2), {})
        tensor([1., 1.])
    """

    #: On an equal score, keep the later images (``True``) or the earlier ones (``False``).
    later_on_ties: bool = False

    def score(self, images: Tensor, terms: dict[str, Tensor]) -> Tensor:
        """``(B,)`` the score of ``images`` (the images a step scored, with that step's ``terms``)."""
        raise NotImplementedError


class HighestScore(Criterion):
    """The images where the term ``term`` (default: the objective) was highest.

    Example:
        >>> HighestScore().score(torch.zeros(2, 1, 2, 2), {"objective": torch.tensor([0.5, -1.0])})
        tensor([ 0.5000, -1.0000])
    """

    def __init__(self, term: str = "objective") -> None:
        self.term = term

    def score(self, images: Tensor, terms: dict[str, Tensor]) -> Tensor:
        if self.term not in terms:
            raise KeyError(f"HighestScore: no term {self.term!r} among the step's terms {sorted(terms)}")
        return terms[self.term].detach().float()


class SmallestNorm(Criterion):
    """The successful images (the objective's ``is_done``) closest to a per-row reference: minimal-norm attacks.

    The score is ``−‖x − reference‖`` where the row is done, ``-inf`` elsewhere; on an equal norm the later
    images are kept.

    Args:
        reference: ``(B, C, H, W)`` the clean images.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.

    Example:
        >>> criterion = SmallestNorm(torch.zeros(2, 1, 1, 2), "L2")
        >>> criterion.score(torch.tensor([[[[3.0, 4.0]]], [[[1.0, 0.0]]]]), {"done": torch.tensor([True, False])})
        tensor([-5., -inf])
    """

    later_on_ties = True

    def __init__(self, reference: Tensor, norm: Norm = "L2") -> None:
        self.reference = reference.detach()
        self.norm = norm

    def score(self, images: Tensor, terms: dict[str, Tensor]) -> Tensor:
        if "done" not in terms:
            raise KeyError("SmallestNorm needs the objective's success flags: run with track_done=True")
        distance = lp_norms(images.detach() - self.reference.to(images), self.norm)
        return torch.where(terms["done"], -distance, torch.full_like(distance, -math.inf))


@dataclass
class RunRecord:
    """What a run did, per row.

    Attributes:
        images: ``(B, C, H, W)`` the final images.
        best: ``(B, C, H, W)`` each row's best images under the run's :class:`Criterion` (the starting images
            where none qualified); the final images when the run has no criterion.
        best_score: ``(B,)`` the criterion's score of :attr:`best` (``-inf``: no images qualified).
        improved: ``(B,)`` bool: the row's best changed at the last scored step.
        first_success: ``(B,)`` the step at which the row was first done (the objective's ``is_done``): ``k``
            means the images after ``k`` updates; ``-1``: never (or not tracked).
        steps: ``(B,)`` the updates each row received (fewer than the run's steps for a row frozen once done).
        step_sizes: ``(B,)`` each row's step size: the row-wise optimizer's own ``lr`` tensor (a callback that
            changes it changes the steps), else the first parameter group's learning rate; ``None`` before
            the run or without a learning rate.
        done: ``(B,)`` bool: the row was done when it was last scored.
        terms: the terms of the last scoring (detached).
        scored: the images of the last scoring (detached; the images after ``step`` updates during a step's
            callbacks).
        history: what callbacks recorded step by step (e.g. the predicted class after every step).
        info: what an attack adds (AutoAttack: its per-member report).
        active: ``(B,)`` bool: the rows still optimized. A callback clears a row to stop it after the current
            step (an early abort: its images stay as they are); the run ends when no row is active.
    """

    images: Tensor
    best: Tensor
    best_score: Tensor
    improved: Tensor
    first_success: Tensor
    steps: Tensor
    step_sizes: Tensor | None
    done: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict, repr=False)
    scored: Tensor | None = field(default=None, repr=False)
    history: list[Tensor] = field(default_factory=list, repr=False)
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    active: Tensor | None = field(default=None, repr=False)

    @classmethod
    def start(cls, images: Tensor) -> RunRecord:
        """The record of a run about to start from ``images``.

        Example:
            >>> record = RunRecord.start(torch.zeros(3, 1, 4, 4))
            >>> record.first_success, record.best_score
            (tensor([-1, -1, -1]), tensor([-inf, -inf, -inf]))
        """
        images = images.detach().clone()
        batch, device = images.shape[0], images.device
        return cls(images=images, best=images.clone(),
                   best_score=torch.full((batch,), -math.inf, device=device),
                   improved=torch.zeros(batch, dtype=torch.bool, device=device),
                   first_success=torch.full((batch,), -1, dtype=torch.long, device=device),
                   steps=torch.zeros(batch, dtype=torch.long, device=device), step_sizes=None,
                   done=torch.zeros(batch, dtype=torch.bool, device=device),
                   active=torch.ones(batch, dtype=torch.bool, device=device))

    @property
    def batch_size(self) -> int:
        """The number of rows."""
        return self.images.shape[0]

    @torch.no_grad()
    def observe(self, step: int, images: Tensor, terms: dict[str, Tensor], criterion: Criterion | None) -> None:
        """Record a scored step: ``images`` (the images the step scored, after ``step`` updates) and their terms.

        Example:
            >>> record = RunRecord.start(torch.zeros(2, 1, 1, 1))
            >>> record.observe(0, torch.ones(2, 1, 1, 1), {"objective": torch.tensor([1.0, 2.0]),
            ...                                             "done": torch.tensor([False, True])}, HighestScore())
            >>> record.first_success, record.best_score
            (tensor([-1,  0]), tensor([1., 2.]))
        """
        self.terms = {name: value.detach() for name, value in terms.items()}
        self.scored = images.detach()
        done = terms.get("done")
        if done is not None:
            self.done = done.detach().clone()
            self.first_success = torch.where((self.first_success < 0) & self.done, step, self.first_success)
        if criterion is None:  # the best are the final images (finish)
            return
        score = criterion.score(images, terms).to(self.best_score)
        better = score >= self.best_score if criterion.later_on_ties else score > self.best_score
        better &= torch.isfinite(score)
        self.improved = better
        if better.any():
            self.best_score = torch.where(better, score, self.best_score)
            self.best[better] = images.detach()[better].to(self.best)

    @torch.no_grad()
    def keep_best(self, other: RunRecord) -> RunRecord:
        """Take ``other``'s best images (another run on the same rows: a restart, a binary-search step) where they
        score higher than this record's; returns this record.

        Example:
            >>> a, b = RunRecord.start(torch.zeros(2, 1, 1, 1)), RunRecord.start(torch.ones(2, 1, 1, 1))
            >>> b.best_score = torch.tensor([1.0, -math.inf])
            >>> a.keep_best(b).best.flatten().tolist(), a.best_score.tolist()
            ([1.0, 0.0], [1.0, -inf])
        """
        better = other.best_score > self.best_score
        self.best[better] = other.best[better].to(self.best)
        self.best_score = torch.where(better, other.best_score.to(self.best_score), self.best_score)
        first = torch.where(self.first_success < 0, other.first_success.to(self.first_success), self.first_success)
        self.first_success = first
        self.done |= other.done.to(self.done)
        self.steps += other.steps.to(self.steps)
        return self

    def finish(self, images: Tensor, criterion: Criterion | None) -> RunRecord:
        """Set the final images (without a criterion, they are also the best) and return the record."""
        self.images = images.detach().clone()
        if criterion is None:
            self.best = self.images.clone()
        return self


class StepCallback:
    """Named hooks of a run of the step engine; each receives the run's :class:`RunRecord`.

    A callback may read and change the images' tensor, its gradient (in :meth:`on_after_backward`), the
    projection that follows the step (``param.radius``) and the record's ``step_sizes``. What it needs
    beyond the record (the parameterization) is given to its constructor.

    Example:
        >>> class CountSteps(StepCallback):
        ...     def __init__(self):
        ...         self.count = 0
        ...     def on_after_backward(self, record, step, terms):
        ...         self.count += 1
        >>> CountSteps().count
        0
    """

    def on_start(self, record: RunRecord) -> None:
        """Before the first step (the record holds the starting images and the step sizes)."""

    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        """After the backward of ``step`` and before its update; ``terms`` are the scored images' (detached)."""

    def on_step_end(self, record: RunRecord, step: int) -> None:
        """After the update of ``step`` (the images now hold ``step + 1`` updates)."""

    def on_end(self, record: RunRecord) -> None:
        """After the run (the record is complete)."""


class StepProgress(StepCallback):
    """Show a run's steps on a progress bar, with the rows still active and done (a long attack reports).

    Args:
        bar: a ``tqdm`` bar (or anything with ``reset``, ``update`` and ``set_postfix_str``), reset at each run.
        total: the run's steps (the bar's length; ``None``: a count without a length).

    Example:
        >>> from tqdm.auto import tqdm
        >>> bar = tqdm(disable=True)
        >>> progress = StepProgress(bar, total=10)
        >>> progress.on_start(RunRecord.start(torch.zeros(2, 1, 1, 1)))
        >>> bar.total
        10
    """

    def __init__(self, bar: Any, total: int | None = None) -> None:
        self.bar, self.total = bar, total

    def on_start(self, record: RunRecord) -> None:
        self.bar.reset(total=self.total)

    def on_step_end(self, record: RunRecord, step: int) -> None:
        self.bar.update(1)
        self.bar.set_postfix_str(f"{int(record.done.sum())}/{record.batch_size} done", refresh=False)
