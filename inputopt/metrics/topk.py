"""The top-k natural images of every unit, as a torchmetrics state: one streaming pass over a data set,
merged across processes (all-gather, then top-k again). Optionally also the bottom-k (the most negative
scores) and a uniform sample of the data set's scores, from which examples spread over the activation range
(the 99th, 90th, 50th percentiles, ...) are taken."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["TopKExamples", "merge_top_k", "sample_priority", "unit_scores"]

#: Columns of a packed candidate: score, data-set index, maximal position, label.
_COLUMNS = ("values", "indices", "positions", "labels")
_GOLDEN = 0.6180339887498949


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


def sample_priority(indices: Tensor) -> Tensor:
    """The priority of a data-set index in the uniform sample: ``frac(index · φ)`` (φ the golden ratio), lowest
    kept. A fixed function of the index, so the sample does not depend on the batches or the processes; the
    sequence is equidistributed, so the kept indices spread evenly over the data set (also over a data set
    sorted by class).

    Example:
        >>> sample_priority(torch.tensor([0, 1, 2]))
        tensor([0.0000, 0.6180, 0.2361], dtype=torch.float64)
    """
    return torch.frac(indices.double() * _GOLDEN)


def _keep(packed: Tensor, key: Tensor, k: int) -> Tensor:
    """The ``k`` rows of ``packed (U, N, c)`` with the highest ``key (U, N)``, ties by lowest data-set index."""
    order = packed[..., 1].argsort(dim=1, stable=True)
    order = order.gather(1, key.gather(1, order).argsort(dim=1, descending=True, stable=True))[:, :k]
    return packed.gather(1, order.unsqueeze(-1).expand(-1, -1, packed.shape[-1]))


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


def _top_key(packed: Tensor) -> Tensor:
    return packed[..., 0]


def _bottom_key(packed: Tensor) -> Tensor:
    return torch.where(packed[..., 1] >= 0, -packed[..., 0], float("-inf"))  # empty slots last


def _sample_key(packed: Tensor) -> Tensor:
    return torch.where(packed[..., 1] >= 0, -sample_priority(packed[..., 1]), float("-inf"))


def _merger(key):
    def merge(gathered: Tensor) -> Tensor:
        """``dist_reduce_fx`` of a packed state: ``(P, U, n, c)`` from ``P`` processes -> ``(U, n, c)``."""
        if gathered.ndim == 3:  # one process: torchmetrics does not stack
            return gathered
        n = gathered.shape[2]
        packed = gathered.permute(1, 0, 2, 3).flatten(1, 2)  # (U, P·n, c)
        return _keep(packed, key(packed), n)

    return merge


_merge_processes = _merger(_top_key)


class TopKExamples(Metric):
    """The ``k`` highest-scoring samples of every unit, in one streaming pass; optionally the ``k`` lowest, and
    a uniform sample of ``sample_size`` samples from which examples at ``percentiles`` of the activation range
    are picked.

    Every state is a ``(U, n, 4)`` float64 tensor (score, data-set index, maximal position, label; float64
    holds indices exactly up to 2⁵³), so memory is ``O(U · (2k + sample_size))`` whatever the size of the data
    set. Across processes the states are all-gathered and merged by the same total order (score, then index;
    for the sample, the fixed :func:`sample_priority` of the index), so several processes that split a data
    set, in any batches, give the result of one. Slots not filled yet have score ``-inf`` and index ``-1``.

    What is exact: the top-k and bottom-k. The percentiles are those of the sample: exact when the data set
    has at most ``sample_size`` images, else the percentiles of ``sample_size`` images spread evenly over the
    data set (an estimate; each example shown is a real image with the score shown).

    Args:
        num_units: the number of units (rows).
        k: examples kept per unit.
        bottom: also keep the ``k`` lowest-scoring samples.
        percentiles: percentiles (0-100) of the activation range to pick an example at, e.g. ``[99, 90, 50]``.
        sample_size: size of the sample of scores the percentiles are taken over.

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

    def __init__(self, num_units: int, k: int = 9, bottom: bool = False, percentiles: Sequence[float] = (),
                 sample_size: int = 4096, **kwargs) -> None:
        super().__init__(**kwargs)
        for name, value in (("num_units", num_units), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"sample_size must be an int >= 1, got {sample_size!r}")
        self.q = [float(p) for p in percentiles]
        if any(not 0 <= p <= 100 for p in self.q):
            raise ValueError(f"percentiles must be in [0, 100], got {self.q}")
        self.num_units, self.k, self.bottom = num_units, k, bool(bottom)
        self.sample_size = sample_size if self.q else 0
        self._keys = {"top": _top_key}

        def empty(n: int) -> Tensor:
            return torch.tensor([float("-inf"), -1.0, -1.0, -1.0], dtype=torch.float64).expand(num_units, n, 4).clone()

        self.add_state("top", empty(k), dist_reduce_fx=_merge_processes)
        if self.bottom:
            self._keys["low"] = _bottom_key
            self.add_state("low", empty(k), dist_reduce_fx=_merger(_bottom_key))
        if self.sample_size:
            self._keys["sample"] = _sample_key
            self.add_state("sample", empty(sample_size), dist_reduce_fx=_merger(_sample_key))

    def update(self, scores: Tensor, indices: Tensor, positions: Tensor | None = None,
               labels: Tensor | None = None) -> None:
        """``scores``: ``(B, U)``; ``indices``: ``(B,)`` data-set indices; ``positions``: ``(B, U)`` or ``None``;
        ``labels``: ``(B,)`` class labels of the images or ``None``."""
        if scores.ndim != 2 or scores.shape[1] != self.num_units or indices.shape != scores.shape[:1]:
            raise ValueError(f"scores must be (B, {self.num_units}) with indices (B,), got {tuple(scores.shape)} "
                             f"and {tuple(indices.shape)}")
        device = self.top.device
        scores = scores.to(device).double()
        if positions is None:
            positions = torch.full_like(scores, -1)
        labels = torch.full_like(indices, -1) if labels is None else labels
        column = lambda v: v.to(device).double().view(-1, 1).expand_as(scores)  # noqa: E731
        new = torch.stack([scores, column(indices), positions.to(device).double(), column(labels)],
                          -1).transpose(0, 1)  # (U, B, 4)
        for name, key in self._keys.items():
            state = getattr(self, name)
            packed = torch.cat([state, new], 1)
            setattr(self, name, _keep(packed, key(packed), state.shape[1]))

    @staticmethod
    def _unpack(state: Tensor) -> dict[str, Tensor]:
        return {"values": state[..., 0].float(), "indices": state[..., 1].long(), "positions": state[..., 2].long(),
                "labels": state[..., 3].long()}

    def compute(self) -> dict[str, Tensor]:
        """``{"values": (U, k) float32, "indices": (U, k) long, "positions": (U, k) long, "labels": (U, k) long}``,
        best first (label ``-1``: none given); with ``bottom``, the same under ``"bottom"``, lowest first; with
        ``percentiles``, under ``"percentiles"`` the sampled image whose score is each percentile of the sample
        (nearest rank), ``(U, len(percentiles))``, and ``"sampled"``, the number of images they were taken over.

        Example:
            >>> metric = TopKExamples(num_units=1, k=1, percentiles=[90, 50])
            >>> metric.update(torch.arange(10.0).view(-1, 1), torch.arange(10))
            >>> metric.compute()["percentiles"]["values"]
            tensor([[8., 4.]])
        """
        result = self._unpack(self.top)
        if self.bottom:
            result["bottom"] = self._unpack(self.low)
        if self.q:
            result["percentiles"] = self._percentiles(self.q)
        return result

    def _percentiles(self, q: Sequence[float]) -> dict[str, Any]:
        sample = self.sample
        filled = int((sample[0, :, 1] >= 0).sum())
        if not filled:  # nothing seen: empty slots
            return {**self._unpack(sample[:, :1].expand(-1, len(q), -1)), "sampled": 0}
        kept = sample[:, :filled]  # filled slots come first (priority order); the same images for every unit
        order = kept[..., 0].argsort(dim=1, stable=True)
        ranks = torch.tensor([min(filled - 1, max(0, math.ceil(p / 100 * filled) - 1)) for p in q],
                             device=order.device, dtype=torch.long)  # nearest rank
        chosen = kept.gather(1, order[:, ranks].unsqueeze(-1).expand(-1, -1, 4))
        return {**self._unpack(chosen), "sampled": filled}
