"""The step engine: one optimization step of an input, written once (:class:`StepEngine`), the plain loop
built on it (:func:`optimize`), and what a step refuses (:class:`NonFiniteError`, half-precision inputs).

Pure tensor code (no Lightning): :class:`~inputopt.module.InputOptimization` and :func:`optimize` (the sweeps,
the attacks, the dataset runners) all step through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from inputopt.loss import LossPath, RowWeights, _distinct, select_row_data
from inputopt.objectives.base import Targets, select_rows
from inputopt.params.base import ImageParam
from inputopt.record import Criterion, RunRecord, StepCallback

__all__ = ["REFUSED_PRECISIONS", "NonFiniteError", "StepEngine", "check_precision", "nonfinite_message", "optimize",
           "restore_rows_"]

#: Precisions that would cast the input itself (and the priors' sums of squares) to half precision.
REFUSED_PRECISIONS = ("16-true", "bf16-true")


class NonFiniteError(FloatingPointError):
    """A loss, an image or a checkpoint went non-finite (NaN or Inf): the run stops instead of going on."""


def nonfinite_message(terms: dict[str, Tensor], names: Sequence[str], step: int) -> str:
    """Which terms and which rows of a loss forward are non-finite, for an error message.

    Example:
        >>> terms = {"objective": torch.tensor([1.0, float("nan")]), "TV": torch.ones(2),
        ...          "loss": torch.tensor([0.0, float("nan")])}
        >>> nonfinite_message(terms, ["a", "b"], step=3)
        'non-finite loss (NaN or Inf) at step 3: objective in rows 1 (b)'
    """
    parts = []
    for term, value in terms.items():
        bad = ~torch.isfinite(value.detach())
        if term != "loss" and bad.any():
            parts.append(f"{term} in rows " + ", ".join(f"{i} ({names[i]})" for i in bad.nonzero().flatten().tolist()))
    if not parts:  # finite terms whose weighted sum overflows
        bad = (~torch.isfinite(terms["loss"].detach())).nonzero().flatten().tolist()
        parts.append("the weighted sum of the terms in rows " + ", ".join(f"{i} ({names[i]})" for i in bad))
    return f"non-finite loss (NaN or Inf) at step {step}: " + "; ".join(parts)


@torch.no_grad()
def restore_rows_(tensors: Sequence[Tensor], before: Sequence[Tensor], rows: Tensor) -> None:
    """Put back the values of ``rows`` (a bool ``(B,)`` mask) from ``before``: how done images stay
    frozen under optimizers whose momentum moves rows with a zero gradient."""
    if rows.any():
        for tensor, old in zip(tensors, before):
            tensor[rows] = old[rows]


def check_precision(trainer) -> None:
    """Refuse the precisions that would cast the images themselves to half precision (``trainer``: anything
    with a ``precision``, such as a Lightning ``Trainer``)."""
    precision = str(getattr(trainer, "precision", ""))
    if precision in REFUSED_PRECISIONS:
        raise ValueError(
            f"precision {precision!r} would cast the input itself to half precision, so small updates "
            f"vanish and the priors' sums of squares lose accuracy; use '16-mixed' or 'bf16-mixed' "
            f"(the network runs in half precision, the images and priors stay float32)")


class StepEngine:
    """One optimization step of the images an :class:`~inputopt.params.ImageParam` holds, written once.

    Every run steps through it: :class:`~inputopt.module.InputOptimization` (Lightning does the backward and
    calls the optimizer: :meth:`terms`, :meth:`check_loss` and :meth:`update`), and :func:`optimize`, the plain
    loop of the sweeps, the attacks and the dataset runners (:meth:`step`). A step is:

    1. the loss forward of :class:`~inputopt.loss.LossPath` on ``param()`` (with the rows' references and
       weights, when given), recorded in :attr:`record` (first success, best images); with ``freeze_done``, the
       rows the objective says are done (:meth:`~inputopt.objectives.InputObjective.is_done`) join :attr:`done`
       and score a zero loss; in the plain loop (:meth:`step`) they are left out of the forward and backward
       altogether (:meth:`active_terms`);
    2. the finiteness of the loss: a non-finite row stops the run (:class:`NonFiniteError` naming the term,
       the rows and the step) before any update, so the images of that step are kept;
    3. ``loss.sum().backward()``, then the callbacks' :meth:`~inputopt.record.StepCallback.on_after_backward`;
    4. the optimizer step, the done rows put back as they were (optimizers with momentum move rows whose
       gradient is zero), the projection (:meth:`~inputopt.params.ImageParam.project_`);
    5. the finiteness of the new tensors: a non-finite row puts every tensor back to its last finite state and
       raises :class:`NonFiniteError`;
    6. the callbacks' :meth:`~inputopt.record.StepCallback.on_step_end`, then the scheduler step (plain loop;
       Lightning steps a fit's schedulers).

    The engine holds the run's :class:`~inputopt.record.RunRecord` (:attr:`record`), which every step updates.

    Row-wise optimizers (:mod:`inputopt.optim`) keep their state per row and take per-row step sizes, so
    attacks such as MI-FGSM or APGD run through this same step.

    Args:
        param: the image parameterization (initialized).
        path: the loss path.
        targets: the rows' targets (default: the objective's, on the starting images).
        seeds: one seed per row for the transforms.
        track_done: add the objective's ``is_done`` flags to the terms as ``"done"``.
        freeze_done: stop updating an image once it is done (implies ``track_done``).
        done: the ``(B,)`` bool tensor of done rows, updated in place (default: a new one, all False).
        names: the rows' names for error messages (default: the objective's row names, as a fit's files).
        reference: ``(B, C, H, W)`` each row's reference for centred priors (:class:`~inputopt.priors.Distance`):
            the clean image of an attack, the photo of an accentuation (default: the starting images).
        weights: per-row weights of the terms, ``{"objective" or a prior's name: (B,) tensor}``
            (:class:`~inputopt.loss.LossPath`); a callback may change them in place between steps.
        best: the criterion of each row's best images (:class:`~inputopt.record.HighestScore`,
            :class:`~inputopt.record.SmallestNorm`); ``None``: the final images.
        callbacks: :class:`~inputopt.record.StepCallback` objects, called in order.

    Example:
        >>> from inputopt.networks import build_network
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.params import PixelImage
        >>> param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=[3])
        >>> engine = StepEngine(param, LossPath(build_network("digits"), UnitActivation(None, unit=3)))
        >>> optimizer = torch.optim.SGD(param.parameters(), lr=1e38)
        >>> engine.step(optimizer, 0)["objective"].shape
        torch.Size([1])
        >>> engine.step(optimizer, 1)
        Traceback (most recent call last):
        ...
        inputopt.engine.NonFiniteError: non-finite loss (NaN or Inf) at step 1: objective in rows 0 (output-3); the (finite) images of step 1 are kept
    """

    def __init__(self, param: ImageParam, path: LossPath, targets: Targets = None, seeds: Sequence[int] | None = None,
                 track_done: bool = False, freeze_done: bool = False, done: Tensor | None = None,
                 names: Sequence[str] | None = None, reference: Tensor | None = None, weights: RowWeights | None = None,
                 best: Criterion | None = None, callbacks: Sequence[StepCallback] = ()) -> None:
        self.param = param
        self.path = path
        with torch.no_grad():
            start = param()
        self.targets = path.default_targets(start) if targets is None else targets
        self.seeds = seeds
        self.reference = start.detach() if reference is None and path.centred else reference
        self.weights = path.check_weights(weights, param.batch_size)
        self.best = best
        self.callbacks = list(callbacks)
        self.record = RunRecord.start(start)
        self.freeze_done = freeze_done
        self.track_done = track_done or freeze_done
        self.done = (torch.zeros(param.batch_size, dtype=torch.bool, device=param.tensor.device)
                     if done is None else done)
        self._names = None if names is None else list(names)
        self._last: dict[str, Tensor] | None = None  # each row's terms at its last forward (active_terms)

    @property
    def names(self) -> list[str]:
        """The rows' names in error messages."""
        if self._names is None:
            self._names = _distinct(self.path.objective.row_names(self.param.batch_size), "-")
        return self._names

    def terms(self, step: int, images: Tensor | None = None) -> dict[str, Tensor]:
        """The loss forward of ``images`` (default ``param()``): ``objective``, each prior, ``loss`` (zero on the
        done rows under ``freeze_done``) and, when tracked, ``"done"``."""
        images = self.param() if images is None else images
        terms = self.path.terms(images, self.targets, self.seeds, step, done=self.track_done,
                                reference=self.reference, weights=self.weights)
        if self.freeze_done and "done" in terms:
            self.done |= terms["done"]
            terms["loss"] = torch.where(self.done, torch.zeros_like(terms["loss"]), terms["loss"])
        self.record.observe(step, images, terms, self.best)
        return terms

    def active_terms(self, step: int) -> dict[str, Tensor]:
        """:meth:`terms` with the loss forward run on the rows not yet done only (``freeze_done``).

        The active rows of ``param()``, their targets and seeds are gathered, scored, and scattered back into
        ``(B,)`` terms: a done row's ``loss`` is zero (no gradient, as in :meth:`terms`) and its other terms
        keep the values of its last forward (its image is frozen, so they are what a forward would give).
        Every row is scored while none is done (the first step), so the cache is complete before it is
        read. For the rows still active the terms equal :meth:`terms`' (the network scores each row on its
        own: an eval-mode network), and the done rows cost no forward or backward.
        """
        images = self.param()
        if self._last is None or not self.done.any() or self.done.all():
            terms = self.terms(step, images)
        else:
            rows = (~self.done).nonzero().flatten()
            seeds = None if self.seeds is None else [self.seeds[i] for i in rows.tolist()]
            active = self.path.terms(images[rows], select_rows(self.targets, rows), seeds, step,
                                     done=self.track_done, reference=select_row_data(self.reference, rows),
                                     weights=select_row_data(self.weights, rows))
            terms = {}
            for name, value in active.items():
                if name == "loss":
                    full = value.new_zeros(self.param.batch_size)
                elif name == "done":
                    full = torch.ones(self.param.batch_size, dtype=torch.bool, device=value.device)
                else:
                    full = self._last[name].to(value.dtype)
                terms[name] = full.index_put((rows,), value)
            if "done" in terms:
                self.done |= terms["done"]
                terms["loss"] = torch.where(self.done, torch.zeros_like(terms["loss"]), terms["loss"])
            self.record.observe(step, images, terms, self.best)
        self._last = {name: value.detach().clone() for name, value in terms.items() if name not in ("loss", "done")}
        return terms

    def check_loss(self, terms: dict[str, Tensor], step: int) -> None:
        """Raise :class:`NonFiniteError` when a row's loss is non-finite (the images, finite, are kept)."""
        if not torch.isfinite(terms["loss"].detach()).all():
            raise NonFiniteError(nonfinite_message(terms, self.names, step)
                                 + f"; the (finite) images of step {step} are kept")

    def update(self, optimizer_step: Callable[[], object], step: int) -> None:
        """The update after the backward of ``step``: ``optimizer_step()``, the done rows put back, the
        projection, and the finiteness of the result (else the last finite tensors come back and
        :class:`NonFiniteError` names the rows)."""
        tensors = list(self.param.parameters())
        before = [t.detach().clone() for t in tensors]  # the last finite state, and the rows a done image keeps
        try:
            optimizer_step()
        except RuntimeError as error:  # a step size beyond float32 (lr 1e38): the images would go non-finite
            if "overflow" not in str(error):
                raise
            with torch.no_grad():
                for tensor, old in zip(tensors, before):
                    tensor.copy_(old)
            raise NonFiniteError(f"the optimizer's step overflowed float32 at step {step + 1} ({error}; a learning "
                                 f"rate too large?); the images of step {step} are restored and kept") from error
        if self.freeze_done:
            restore_rows_(tensors, before, self.done)
        if self.callbacks:  # rows a callback stopped keep their images (no check, no device sync, without callbacks)
            stopped = ~self.record.active
            restore_rows_(tensors, before, stopped)
            self.record.steps += (~(self.done | stopped) if self.freeze_done else ~stopped).long()
        else:
            self.record.steps += (~self.done).long() if self.freeze_done else 1
        self.param.project_()
        finite = torch.stack([torch.isfinite(t.detach().flatten(1)).all(1) for t in tensors]).all(0)
        if not finite.all():
            with torch.no_grad():
                for tensor, old in zip(tensors, before):
                    tensor.copy_(old)
            rows = [f"{i} ({name})" for i, name in enumerate(self.names) if not finite[i]]
            raise NonFiniteError(
                f"the images went non-finite (NaN or Inf) at step {step + 1} in rows {', '.join(rows)} "
                f"(a learning rate too large?); the images of step {step} are restored and kept")

    def start(self, optimizer: torch.optim.Optimizer | None = None) -> RunRecord:
        """Begin the run: the record takes the step sizes (a row-wise optimizer's own ``(B,)`` ``lr`` tensor,
        shared, so that changing one changes the other; else the first group's learning rate) and the
        callbacks' :meth:`~inputopt.record.StepCallback.on_start` run."""
        if optimizer is not None:
            rows = (self.param.batch_size,)
            group_lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
            for lr in (getattr(optimizer, "lr", None), group_lr):  # a row-wise optimizer's own (B,) tensor
                if isinstance(lr, Tensor) and lr.shape == rows:
                    self.record.step_sizes = lr
                    break
            else:
                if isinstance(group_lr, (int, float)) or (isinstance(group_lr, Tensor) and group_lr.numel() == 1):
                    self.record.step_sizes = torch.full(rows, float(group_lr))
        for callback in self.callbacks:
            callback.on_start(self.record)
        return self.record

    def step(self, optimizer: torch.optim.Optimizer, step: int) -> dict[str, Tensor] | None:
        """One whole step in a plain loop: zero the gradients, :meth:`terms`, :meth:`check_loss`, backward, the
        callbacks' ``on_after_backward``, :meth:`update`, their ``on_step_end``. Returns the terms, or ``None``
        when every row is done under ``freeze_done`` (nothing left to optimize)."""
        optimizer.zero_grad(set_to_none=True)
        terms = self.active_terms(step) if self.freeze_done else self.terms(step)
        if self.freeze_done and "done" in terms and self.done.all():
            return None
        if self.callbacks and not self.record.active.any():  # every row stopped by a callback
            return None
        self.check_loss(terms, step)
        terms["loss"].sum().backward()
        if self.callbacks:
            detached = {name: value.detach() for name, value in terms.items()}
            for callback in self.callbacks:
                callback.on_after_backward(self.record, step, detached)
        self.update(optimizer.step, step)
        for callback in self.callbacks:
            callback.on_step_end(self.record, step)
        return terms

    @torch.no_grad()
    def finish(self, step: int, score: bool = True) -> RunRecord:
        """End the run after ``step`` updates: score the final images (their first success, and whether they
        are the best; with ``score``, when the run tracks either), set them in the record and run the callbacks'
        ``on_end``."""
        images = self.param()
        if score and (self.track_done or self.best is not None):
            terms = self.path.terms(images, self.targets, self.seeds, step, done=self.track_done,
                                    reference=self.reference, weights=self.weights)
            if self.freeze_done and "done" in terms:
                self.done |= terms["done"]
            self.record.observe(step, images, terms, self.best)
        self.record.finish(images, self.best)
        for callback in self.callbacks:
            callback.on_end(self.record)
        return self.record


def optimize(param: ImageParam, path: LossPath, steps: int,
             optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
             targets: Targets = None, seeds: Sequence[int] | None = None,
             callbacks: Sequence[StepCallback] = (),
             scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
             track_done: bool = False, freeze_done: bool = False, reference: Tensor | None = None,
             weights: RowWeights | None = None, best: Criterion | None = None, score_final: bool = True) -> RunRecord:
    """Optimize ``param`` for ``steps`` steps in a plain loop: the step of a fit (:class:`StepEngine`).

    For inner loops (a batch of a data set, a chunk of units, an attack) where a Lightning ``fit`` per
    batch would be too heavy. Each step: ``path.terms(param(), ...)`` (recorded) → finiteness →
    ``loss.sum().backward()`` → callbacks → optimizer step → done rows restored → ``param.project_()`` →
    finiteness → callbacks → scheduler step. After the last step, the final images are scored when the run
    tracks success or a best (one evaluation without gradient). A non-finite loss or image raises
    :class:`NonFiniteError` and keeps the last finite images in ``param``.

    Args:
        param: an initialized image parameterization.
        path: the loss path.
        steps: number of optimizer steps.
        optimizer: builds the optimizer from the parameters (default Adam, lr 0.1).
        targets: the rows' targets (default: the objective's, on the starting images).
        seeds: one seed per row for the transforms.
        callbacks: :class:`~inputopt.record.StepCallback` objects: ``on_after_backward(record, step, terms)``
            runs after the gradient is computed and before the optimizer step, with the (detached) terms of the
            images ``param()`` holds at that moment (with ``"done"`` when tracked); it may read or change
            ``param.tensor`` and its ``.grad`` rows in place, the projection (``param.radius``) that follows the
            step, and ``record.step_sizes``.
        scheduler: builds a learning-rate scheduler from the optimizer, stepped after every step.
        track_done: add the objective's ``is_done`` flags to the terms as ``"done"``.
        freeze_done: stop updating an image once it is done (implies ``track_done``); the loop ends
            early when every image is done.
        reference: each row's reference for centred priors (default: the starting images).
        weights: per-row weights of the terms, ``{"objective" or a prior's name: (B,) tensor}``.
        best: the criterion that picks each row's best images (``None``: the final images).
        score_final: score the final images (after the last update) for the record's first success and best;
            ``False`` keeps only the points the steps scored (as FMN's reference implementation does).

    Returns:
        The run's :class:`~inputopt.record.RunRecord` (``param`` holds the final images).

    Example:
        >>> from inputopt.networks import build_network
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.params import PixelImage
        >>> from inputopt.record import HighestScore
        >>> param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=[3])
        >>> path = LossPath(build_network("digits"), UnitActivation(None, unit=3))
        >>> before = path.terms(param(), None)["objective"].item()
        >>> record = optimize(param, path, steps=5, best=HighestScore())
        >>> record.best_score.item() > before, record.steps.tolist()
        (True, [5])
    """
    opt = (optimizer or (lambda p: torch.optim.Adam(p, lr=0.1)))(list(param.parameters()))
    schedule = scheduler(opt) if scheduler is not None else None
    engine = StepEngine(param, path, targets, seeds, track_done=track_done, freeze_done=freeze_done,
                        reference=reference, weights=weights, best=best, callbacks=callbacks)
    engine.start(opt)
    done = 0
    for step in range(steps):
        if engine.step(opt, step) is None:
            break
        done = step + 1
        if schedule is not None:
            schedule.step()
        if callbacks and not engine.record.active.any():  # callbacks stopped every row (an early abort)
            break
    return engine.finish(done, score=score_final)
