"""Feature inversion: an input whose activations at a layer match those of a given image."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import InputObjective

__all__ = ["FeatureMatch"]


class FeatureMatch(InputObjective):
    """Match a layer's activations to target activations, one target per row (Mahendran & Vedaldi 2015).

    The targets are data: row ``i``'s target is the activation ``Φ(x₀ᵢ)`` of the image it inverts, a tensor of
    the layer's shape with one row per image. By default (:meth:`default_targets`) they are the activations of
    the images it is given, so ``InputOptimization(..., init=photo)`` reproduces the photo;
    :class:`~inputopt.runners.inversion.FeatureInversion` gives the activations of every image of a data set
    and starts each inversion from noise. The score, to maximize, is

    - ``"l2"``: ``−‖Φ(x) − Φ(x₀)‖² / ‖Φ(x₀)‖²``, the relative squared distance (0 at a perfect match);
    - ``"cosine"``: the cosine similarity of the flattened activations (1 at a match up to scale).

    Args:
        layer: the dotted layer name (``None``: the network's output).
        metric: ``"l2"`` or ``"cosine"``.

    Example:
        >>> import torch
        >>> objective = FeatureMatch("features.3")
        >>> target = torch.ones(2, 4, 3, 3)
        >>> objective({"features.3": torch.zeros(2, 4, 3, 3)}, target)
        tensor([-1., -1.])
        >>> FeatureMatch("features.3", metric="cosine")({"features.3": 2 * target}, target)
        tensor([1., 1.])
    """

    value_name = "similarity"

    def __init__(self, layer: str | None, metric: str = "l2") -> None:
        super().__init__(layer)
        if metric not in ("l2", "cosine"):
            raise ValueError(f"metric must be 'l2' or 'cosine', got {metric!r}")
        self.metric = metric

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The activations of the images given, detached: the targets that reproduce them."""
        return activations[self.layer].detach().float().clone()

    def forward(self, activations: dict[str, Tensor], targets: Tensor) -> Tensor:
        x = activations[self.layer].flatten(1).float()
        t = targets.to(x.device).flatten(1).float()
        if x.shape != t.shape:
            raise ValueError(f"FeatureMatch: layer {self.layer!r} gives {tuple(x.shape)} values per batch, but the "
                             f"targets have {tuple(t.shape)}; the targets must come from the same layer and image size")
        if self.metric == "cosine":
            return F.cosine_similarity(x, t, dim=1, eps=1e-12)
        return -(x - t).pow(2).sum(1) / t.pow(2).sum(1).clamp_min(1e-12)
