"""Plausibility: how far images lie from real photographs in a reference network's feature space."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["plausibility_distance"]


def plausibility_distance(features: Tensor, reference: Tensor, k: int = 1) -> Tensor:
    r"""Per image, the mean cosine distance of its features to its ``k`` nearest reference features: ``(B,)``.

    With unit vectors :math:`u_i = f_i / \|f_i\|` and :math:`r_j = g_j / \|g_j\|` (features flattened), the
    distance of image ``i`` is :math:`1 - \frac1k \sum_{j \in \mathrm{kNN}(i)} u_i \cdot r_j`, the ``k``
    reference images most similar to it. 0 when an image's features point the way a real photograph's
    do; about 1 for unrelated directions. Lower is more plausible. The features are those of a
    *reference* network (e.g. its global-pooled penultimate layer), the reference its features on real
    photographs: visualizations that fool the optimized network with patterns no photograph has land far
    from every photograph (Fel et al. 2023 score plausibility in the same spirit, against the nearest
    ImageNet images).

    Args:
        features: ``(B, ...)`` features of the images.
        reference: ``(N, ...)`` features of the real photographs, same feature shape, ``N >= k``.
        k: how many nearest photographs to average over.

    Example:
        >>> reference = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> plausibility_distance(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), reference)
        tensor([0.0000, 0.2929])
    """
    if features.ndim < 2 or reference.ndim < 2 or features.shape[1:] != reference.shape[1:]:
        raise ValueError(f"features (B, ...) and reference (N, ...) must have the same feature shape, got "
                         f"{tuple(features.shape)} and {tuple(reference.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= reference.shape[0]:
        raise ValueError(f"k must be an int in [1, {reference.shape[0]}] (the number of reference images), got {k!r}")
    unit = torch.nn.functional.normalize(features.flatten(1).double(), dim=1)
    ref = torch.nn.functional.normalize(reference.flatten(1).double().to(unit.device), dim=1)
    nearest = (unit @ ref.T).topk(k, dim=1).values
    return (1 - nearest.mean(1)).float()
