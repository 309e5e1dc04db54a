"""The loss path, written once: images → transforms → normalization → capture → objective and priors → loss.

Pure tensor code (no Lightning): the step engine (:class:`~inputopt.engine.StepEngine`) runs it, for
:class:`~inputopt.InputOptimization`'s ``training_step`` and for :func:`~inputopt.engine.optimize`, the plain
loop inside the evaluation step of a dataset runner or an attack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from inputopt.capture import OUTPUT, evaluate
from inputopt.networks import probe as probe_network
from inputopt.objectives.base import InputObjective, Targets
from inputopt.priors.base import Prior
from inputopt.transforms.base import Transforms

__all__ = ["LossPath", "RowWeights", "prior_names", "probe", "select_row_data"]

#: Per-row weights of a loss's terms: ``{"objective" or a prior's name: (B,) tensor}``.
RowWeights = Mapping[str, Tensor]


def _distinct(names: list[str], sep: str) -> list[str]:
    """Names made unique by appending the position to those that occur more than once."""
    return [f"{n}{sep}{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def select_row_data(data: Tensor | RowWeights | None, rows: Tensor) -> Tensor | dict[str, Tensor] | None:
    """The ``rows`` of per-row data: a tensor's rows, or each tensor's rows of a mapping (``None`` stays ``None``).

    Example:
        >>> select_row_data({"objective": torch.tensor([1.0, 2.0, 3.0])}, torch.tensor([2, 0]))
        {'objective': tensor([3., 1.])}
    """
    if data is None:
        return None
    if isinstance(data, Tensor):
        return data[rows.to(data.device)]
    return {name: value[rows.to(value.device)] for name, value in data.items()}


def prior_names(priors: Sequence[Prior]) -> list[str]:
    """A distinct name per prior: its class name, with its position when a class appears twice."""
    return _distinct([type(p).__name__ for p in priors], "_")


class LossPath:
    """The two forwards of an input optimization, over a frozen network.

    - The **loss forward** (:meth:`terms`): the images go through the robustness transforms (seeded by
      row and step), the input normalization and the network, stopped after the deepest layer the
      objective reads; the objective scores the transformed images, the priors penalize the images
      themselves; ``loss_i = Σ_p w_p·ω_{p,i}·h_p(x_i) − ω_i·f_i(T(x_i))``. The per-row weights ``ω``
      (default 1) and the per-row reference of the centred priors (:class:`~inputopt.priors.Distance`:
      ``h(x_i, r_i)``) are data, like the targets: Carlini-Wagner's ``c_i·f(x_i) + ‖x_i − x0_i‖²`` is the
      objective weighted by ``c`` and a distance centred on the clean images.
    - The **evaluation forward** (:meth:`activations`): normalization and network only, no transforms.
      Shape probes, targets, ``is_done``, prediction tables, checks and results use it.
    - A randomized network that is an **expectation** (``expectation = True`` and ``draws(x) -> (n, B, ...)``:
      :class:`~inputopt.attacks.EOT`): the loss forward scores the objective (on the output) on each draw and
      averages it per row, so that the gradient is the mean of the draws' gradients.

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

    @property
    def centred(self) -> bool:
        """Whether a prior reads a per-row reference (:attr:`~inputopt.priors.Prior.centred`)."""
        return any(prior.centred for prior in self.priors)

    def check_weights(self, weights: RowWeights | None, batch_size: int) -> dict[str, Tensor] | None:
        """``weights`` as ``{term: (B,) float tensor}``, checked: each name is ``"objective"`` or a prior's name
        and each value has one finite number per row.

        Example:
            >>> from inputopt.networks import build_network
            >>> from inputopt.objectives import UnitActivation
            >>> path = LossPath(build_network("digits"), UnitActivation(None, unit=1))
            >>> path.check_weights({"objectve": torch.ones(2)}, 2)
            Traceback (most recent call last):
            ...
            ValueError: weights name 'objectve', not a term of this loss; the terms are ['objective']
        """
        if weights is None:
            return None
        terms = ["objective", *self.prior_names]
        checked = {}
        for name, value in weights.items():
            if name not in terms:
                raise ValueError(f"weights name {name!r}, not a term of this loss; the terms are {terms}")
            value = torch.as_tensor(value, dtype=torch.float32)
            if value.shape != (batch_size,) or not torch.isfinite(value).all():
                raise ValueError(f"weights[{name!r}] must hold one finite number per row ({batch_size}), got "
                                 f"{value.tolist() if value.numel() <= 8 else tuple(value.shape)}")
            checked[name] = value
        return checked

    def activations(self, images: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """The evaluation forward: outputs of ``layers`` (default: the objective's) for ``images``, no transforms."""
        return evaluate(self.network, images, self.objective.layers if layers is None else layers, self.normalize)

    @torch.no_grad()
    def default_targets(self, images: Tensor) -> Targets:
        """The objective's per-row targets for these (starting) images, checked against real shapes."""
        return self.objective.default_targets(self.activations(images))

    def terms(self, images: Tensor, targets: Targets, seeds: Sequence[int] | None = None,
              step: int = 0, done: bool = False, reference: Tensor | None = None,
              weights: RowWeights | None = None) -> dict[str, Tensor]:
        """The loss forward: per-image ``objective``, each prior (unweighted, by name) and ``loss``, each ``(B,)``.

        Args:
            images: ``(B, C, H, W)``, e.g. ``param()`` or the rows of it this process scores.
            targets: the rows' targets (see :meth:`InputObjective.default_targets`), same rows.
            seeds: one seed per row for the transforms' random draws (needed when there are transforms).
            step: the optimization step, the transforms' other source of randomness.
            done: also return the objective's ``is_done`` on the evaluation forward as ``"done"`` (a bool
                ``(B,)`` tensor, absent when the objective has none); without transforms it reuses the
                loss forward's activations.
            reference: ``(B, C, H, W)`` the rows' references, for the centred priors (needed when there is one).
            weights: per-row weights of the terms, ``{"objective" or a prior's name: (B,)}`` (default: 1).
        """
        x = images
        if self.transforms is not None:
            if seeds is None:
                raise ValueError("random transforms need one seed per row "
                                 "(RowRandom(seed).stream('start').seeds(keys))")
            x = self.transforms(images, seeds, step)
        weights = weights or {}
        if getattr(self.network, "expectation", False):
            objective, mean_output = self._expectation(x, targets)
            terms, activations = {"objective": objective}, {OUTPUT: mean_output}
        else:
            activations = self.activations(x)
            terms = {"objective": self.objective(activations, targets)}
        loss = -self._weighted(terms["objective"], weights.get("objective"))
        for name, prior in zip(self.prior_names, self.priors):
            if prior.centred:
                if reference is None:
                    raise ValueError(f"{name} is centred on a per-row reference: give the rows' reference images")
                terms[name] = prior(images, reference.to(images))
            else:
                terms[name] = prior(images)
            loss = loss + prior.weight * self._weighted(terms[name], weights.get(name))
        terms["loss"] = loss
        if done:
            with torch.no_grad():
                evaluation = activations if self.transforms is None else self.activations(images)
                flags = self.objective.is_done(evaluation, targets)
            if flags is not None:
                terms["done"] = flags.detach()
        return terms

    def _expectation(self, x: Tensor, targets: Targets) -> tuple[Tensor, Tensor]:
        """The objective averaged per row over the draws of a randomized network (a network with ``expectation =
        True`` and ``draws(x) -> (n, B, ...)``, such as :class:`~inputopt.attacks.EOT`), whose gradient is the mean
        of the draws' gradients, and the mean output (the network's evaluation forward, without drawing again)."""
        if tuple(self.objective.layers) != (OUTPUT,):
            raise ValueError(f"an expectation over a randomized network ({type(self.network).__name__}) scores the "
                             f"objective on the network's output only; {type(self.objective).__name__} reads the "
                             f"layers {list(self.objective.layers)}")
        outputs = self.network.draws(x if self.normalize is None else self.normalize(x))
        objective = torch.stack([self.objective({OUTPUT: output}, targets) for output in outputs]).mean(0)
        return objective, outputs.detach().mean(0)

    @staticmethod
    def _weighted(value: Tensor, weight: Tensor | None) -> Tensor:
        return value if weight is None else value * weight.to(value)


def probe(path: LossPath, images: Tensor, network_name: str | None = None) -> dict[str, Tensor]:
    """The shape probe of a loss path (:func:`inputopt.networks.probe`): its evaluation forward of ``images`` up to
    the objective's layers, with an error that says what the network takes when it cannot take them."""
    return probe_network(path.network, images, path.objective.layers, path.normalize, network_name)
