"""The top-k natural images of every unit, as a torchmetrics state: one streaming pass over a data set,
merged across processes (all-gather, then top-k again)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["TopKExamples", "merge_top_k", "unit_scores"]


def unit_scores(activations: Tensor, units: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """How strongly each image drives each unit: a channel's maximum over positions, or a feature's value.

    Args:
        activations: a layer's output, ``(B, C, H, W)`` (a unit is a channel) or ``(B, F)`` (a feature).
        units: the channel or feature indices.

    Returns:
        ``scores (B, U)`` and ``positions (B, U)``: the flat index ``y·W + x`` of the maximal position in
        the map (``-1`` for ``(B, F)`` layers).

    Example:
        >>> acts = torch.zeros(1, 2, 2, 3)
        >>> acts[0, 1, 1, 2] = 5.0
        >>> unit_scores(acts, [1])
        (tensor([[5.]]), tensor([[5]]))
    """
    units = torch.as_tensor(units, dtype=torch.long, device=activations.device).view(-1)
    if activations.ndim not in (2, 4):
        raise ValueError(f"unit scores need a (B, C, H, W) or (B, F) layer output, got {tuple(activations.shape)}")
    count = activations.shape[1]
    if len(units) and (units.min() < 0 or units.max() >= count):
        raise ValueError(f"units must be in [0, {count}) for a layer with {count} channels/features, got "
                         f"{units.tolist()}")
    chosen = activations[:, units]
    if chosen.ndim == 2:
        return chosen, torch.full_like(chosen, -1, dtype=torch.long)
    scores, positions = chosen.flatten(2).max(2)
    return scores, positions


def merge_top_k(values: Tensor, indices: Tensor, positions: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``k`` best candidates of every row: highest value first, ties by lowest data-set index.

    The order is a total order on ``(value, index)``, so the result does not depend on the order the
    candidates arrive in (batches, processes).

    Args:
        values: ``(U, N)`` candidate scores.
        indices: ``(U, N)`` their data-set indices.
        positions: ``(U, N)`` their maximal positions.
        k: how many to keep (``N`` when ``N < k``).

    Example:
        >>> merge_top_k(torch.tensor([[1.0, 3.0, 3.0]]), torch.tensor([[0, 5, 2]]), torch.tensor([[0, 0, 0]]), 2)
        (tensor([[3., 3.]]), tensor([[2, 5]]), tensor([[0, 0]]))
    """
    order = indices.argsort(dim=1, stable=True)
    order = order.gather(1, values.gather(1, order).argsort(dim=1, descending=True, stable=True))[:, :k]
    return values.gather(1, order), indices.gather(1, order), positions.gather(1, order)


def _merge_processes(gathered: Tensor) -> Tensor:
    """``dist_reduce_fx`` of the packed state: ``(P, U, k, 3)`` from ``P`` processes -> ``(U, k, 3)``."""
    k = gathered.shape[2]
    packed = gathered.permute(1, 0, 2, 3).flatten(1, 2)  # (U, P·k, 3)
    values, indices, positions = merge_top_k(packed[..., 0], packed[..., 1], packed[..., 2], k)
    return torch.stack([values, indices, positions], -1)


class TopKExamples(Metric):
    """The ``k`` highest-scoring samples of every unit, in one streaming pass.

    The state is one ``(U, k, 3)`` float64 tensor (score, data-set index, maximal position; float64 holds
    indices exactly up to 2⁵³); across processes it is all-gathered and merged by :func:`merge_top_k`, so
    several processes that split a data set give the result of one. Slots not filled yet (fewer than
    ``k`` samples seen) have score ``-inf`` and index ``-1``.

    Args:
        num_units: the number of units (rows).
        k: examples kept per unit.

    Example:
        >>> metric = TopKExamples(num_units=2, k=2)
        >>> metric.update(torch.tensor([[0.1, 5.0], [0.9, 1.0], [0.5, 7.0]]), torch.tensor([10, 11, 12]))
        >>> result = metric.compute()
        >>> result["indices"], result["values"]
        (tensor([[11, 12],
                [12, 10]]), tensor([[0.9000, 0.5000],
                [7.0000, 5.0000]]))
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, num_units: int, k: int = 9, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, value in (("num_units", num_units), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.num_units, self.k = num_units, k
        empty = torch.tensor([float("-inf"), -1.0, -1.0], dtype=torch.float64).expand(num_units, k, 3).clone()
        self.add_state("top", empty, dist_reduce_fx=_merge_processes)

    def update(self, scores: Tensor, indices: Tensor, positions: Tensor | None = None) -> None:
        """``scores``: ``(B, U)``; ``indices``: ``(B,)`` data-set indices; ``positions``: ``(B, U)`` or ``None``."""
        if scores.ndim != 2 or scores.shape[1] != self.num_units or indices.shape != scores.shape[:1]:
            raise ValueError(f"scores must be (B, {self.num_units}) with indices (B,), got {tuple(scores.shape)} "
                             f"and {tuple(indices.shape)}")
        if positions is None:
            positions = torch.full_like(scores, -1)
        new = torch.stack([scores.double(), indices.double().view(-1, 1).expand_as(scores).to(scores.device),
                           positions.double()], -1).transpose(0, 1)  # (U, B, 3)
        packed = torch.cat([self.top, new.to(self.top.device)], 1)
        self.top = torch.stack(merge_top_k(packed[..., 0], packed[..., 1], packed[..., 2], self.k), -1)

    def compute(self) -> dict[str, Tensor]:
        """``{"values": (U, k) float32, "indices": (U, k) long, "positions": (U, k) long}``, best first."""
        return {"values": self.top[..., 0].float(), "indices": self.top[..., 1].long(),
                "positions": self.top[..., 2].long()}
