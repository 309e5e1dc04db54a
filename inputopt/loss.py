"""The loss path, written once: images → transforms → normalization → capture → objective and priors → loss.

Pure tensor code (no Lightning): the step engine (:class:`~inputopt.engine.StepEngine`) runs it, for
:class:`~inputopt.InputOptimization`'s ``training_step`` and for :func:`~inputopt.engine.optimize`, the plain
loop inside the evaluation step of a dataset runner or an attack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from inputopt.capture import evaluate
from inputopt.networks import probe as probe_network
from inputopt.objectives.base import InputObjective, Targets
from inputopt.priors.base import Prior
from inputopt.transforms.base import Transforms

__all__ = ["LossPath", "prior_names", "probe"]


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
