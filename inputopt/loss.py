"""The loss path, written once: images → transforms → normalization → capture → objective and priors → loss.

Pure tensor code (no Lightning): :class:`~inputopt.InputOptimization` calls it from ``training_step``,
and :func:`optimize` from a plain loop, e.g. inside the evaluation step of a dataset runner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from inputopt.capture import evaluate
from inputopt.engine import restore_rows_
from inputopt.networks import probe as probe_network
from inputopt.objectives.base import InputObjective, Targets
from inputopt.params.base import ImageParam
from inputopt.priors.base import Prior
from inputopt.transforms.base import Transforms

__all__ = ["LossPath", "optimize", "prior_names", "probe"]


def _distinct(names: list[str], sep: str) -> list[str]:
    """Names made unique by appending the position to those that occur more than once."""
    return [f"{n}{sep}{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def prior_names(priors: Sequence[Prior]) -> list[str]:
    """A distinct name per prior: its class name, with its position when a class appears twice."""
    return _distinct([type(p).__name__ for p in priors], "_")


class LossPath:
    """The two forwards of an input optimization, over a frozen network.

    - The **loss forward** (:meth:`terms`): the images go through the robustness transforms (seeded by
      row and step), the input normalization and the network, stopped after the deepest layer the
      objective reads; the objective scores the transformed images, the priors penalize the images
      themselves; ``loss_i = Σ_p w_p·h_p(x_i) − f_i(T(x_i))``.
    - The **evaluation forward** (:meth:`activations`): normalization and network only, no transforms.
      Shape probes, targets, ``is_done``, prediction tables, checks and results use it.

    It holds references, not copies: the owner (a LightningModule, a loop) keeps the modules and moves
    them between devices. It has no collectives and no state of its own.

    Args:
        network: the frozen network.
        objective: what to maximize.
        priors: what to penalize, each weighted by its ``weight``.
        transforms: robustness transforms for the loss forward (``None``: none).
        normalize: the input normalization in front of the network (``None``: none).

    Example:
        >>> from inputopt.networks import build_network
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> path = LossPath(build_network("digits"), UnitActivation(None, unit=[3, 8]), [MultiScaleEdgeEnergy(0.1)])
        >>> images = torch.rand(2, 1, 32, 32)
        >>> targets = path.default_targets(images)
        >>> sorted(path.terms(images, targets))
        ['MultiScaleEdgeEnergy', 'loss', 'objective']
    """

    def __init__(self, network: nn.Module, objective: InputObjective, priors: Sequence[Prior] = (),
                 transforms: Transforms | None = None, normalize: nn.Module | None = None) -> None:
        self.network = network
        self.objective = objective
        self.priors = list(priors)
        self.transforms = transforms if transforms is not None and len(transforms) else None
        self.normalize = normalize
        self.prior_names = prior_names(self.priors)

    def activations(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """The evaluation forward: outputs of ``layers`` (default: the objective's) for ``images``, no transforms."""
        return evaluate(self.network, images, self.objective.layers if layers is None else layers, self.normalize)

    @torch.no_grad()
    def default_targets(self, images: Tensor) -> Targets:
        """The objective's per-row targets for these (starting) images, checked against real shapes."""
        return self.objective.default_targets(self.activations(images))

    def terms(self, images: Tensor, targets: Targets, seeds: Sequence[int] | None = None,
              step: int = 0, done: bool = False) -> dict[str, Tensor]:
        """The loss forward: per-image ``objective``, each prior (unweighted, by name) and ``loss``, each ``(B,)``.

        Args:
            images: ``(B, C, H, W)``, e.g. ``param()`` or the rows of it this process scores.
            targets: the rows' targets (see :meth:`InputObjective.default_targets`), same rows.
            seeds: one seed per row for the transforms' random draws (needed when there are transforms).
            step: the optimization step, the transforms' other source of randomness.
            done: also return the objective's ``is_done`` on the evaluation forward as ``"done"`` (a bool
                ``(B,)`` tensor, absent when the objective has none); without transforms it reuses the
                loss forward's activations.
        """
        x = images
        if self.transforms is not None:
            if seeds is None:
                raise ValueError("random transforms need one seed per row (row_seeds(keys, seed))")
            x = self.transforms(images, seeds, step)
        activations = self.activations(x)
        terms = {"objective": self.objective(activations, targets)}
        loss = -terms["objective"]
        for name, prior in zip(self.prior_names, self.priors):
            terms[name] = prior(images)
            loss = loss + prior.weight * terms[name]
        terms["loss"] = loss
        if done:
            with torch.no_grad():
                evaluation = activations if self.transforms is None else self.activations(images)
                flags = self.objective.is_done(evaluation, targets)
            if flags is not None:
                terms["done"] = flags.detach()
        return terms


def probe(path: LossPath, images: Tensor, network_name: str | None = None) -> dict[str, Tensor]:
    """The shape probe of a loss path (:func:`inputopt.networks.probe`): its evaluation forward of ``images`` up to
    the objective's layers, with an error that says what the network takes when it cannot take them."""
    return probe_network(path.network, images, path.objective.layers, path.normalize, network_name)


def optimize(param: ImageParam, path: LossPath, steps: int,
             optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
             targets: Targets = None, seeds: Sequence[int] | None = None,
             callback: Callable[[int, dict[str, Tensor]], None] | None = None,
             scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
             track_done: bool = False, freeze_done: bool = False) -> ImageParam:
    """Optimize ``param`` for ``steps`` steps in a plain loop: the same loss path and projection as a fit.

    For inner loops (a batch of a data set, a chunk of units, an attack) where a Lightning ``fit`` per
    batch would be too heavy. Each step: ``path.terms(param(), ...)`` → ``loss.sum().backward()`` →
    ``callback`` → optimizer step → ``param.project_()`` → scheduler step.

    Args:
        param: an initialized image parameterization.
        path: the loss path.
        steps: number of optimizer steps.
        optimizer: builds the optimizer from the parameters (default Adam, lr 0.1).
        targets: the rows' targets (default: the objective's, on the starting images).
        seeds: one seed per row for the transforms.
        callback: called at every step after the gradient is computed and before the optimizer step,
            with the step index and the (detached) terms of the images ``param()`` holds at that moment
            (with ``"done"`` when tracked). It may read ``param.tensor.grad`` or change the projection
            (``param.radius``) that follows the step.
        scheduler: builds a learning-rate scheduler from the optimizer, stepped after every step.
        track_done: add the objective's ``is_done`` flags to the terms as ``"done"``.
        freeze_done: stop updating an image once it is done (implies ``track_done``); the loop ends
            early when every image is done.

    Returns:
        ``param``, optimized in place.

    Example:
        >>> from inputopt.networks import build_network
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.params import PixelImage
        >>> param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=[3])
        >>> path = LossPath(build_network("digits"), UnitActivation(None, unit=3))
        >>> before = path.terms(param(), None)["objective"].item()
        >>> after = path.terms(optimize(param, path, steps=5)(), None)["objective"].item()
        >>> after > before
        True
    """
    tensors = list(param.parameters())
    opt = (optimizer or (lambda p: torch.optim.Adam(p, lr=0.1)))(tensors)
    schedule = scheduler(opt) if scheduler is not None else None
    if targets is None:
        targets = path.default_targets(param())
    done = torch.zeros(param.batch_size, dtype=torch.bool, device=param.tensor.device)
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        terms = path.terms(param(), targets, seeds, step, done=track_done or freeze_done)
        loss = terms["loss"]
        if freeze_done and "done" in terms:
            done |= terms["done"]
            if done.all():
                break
            loss = torch.where(done, torch.zeros_like(loss), loss)
        loss.sum().backward()
        if callback is not None:
            callback(step, {name: value.detach() for name, value in terms.items()})
        before = [t.detach().clone() for t in tensors] if done.any() else None
        opt.step()
        if before is not None:
            restore_rows_(tensors, before, done)
        param.project_()
        if schedule is not None:
            schedule.step()
    return param
