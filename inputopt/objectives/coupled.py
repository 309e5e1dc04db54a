"""Batch terms: objectives whose rows depend on each other (diversity, alignment).

Every other objective scores image ``i`` alone. These two compare the images of a batch with each other,
so they say which rows they couple (:meth:`~inputopt.objectives.InputObjective.row_groups`) and need
every row of a group in the same call: see the design page's section on batch terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import InputObjective, _int_list

__all__ = ["Alignment", "Diversity"]


def _float_activation(activations: dict[str, Tensor], layer: str) -> Tensor:
    act = activations[layer]
    if act.ndim not in (2, 4):
        raise ValueError(f"layer {layer!r} gives {tuple(act.shape)}; a (B, C) or (B, C, H, W) output is needed")
    return act if act.dtype == torch.float64 else act.float()


def _per_row(values: list[int] | None, batch_size: int, what: str, owner: str, default: Sequence[int]) -> list[int]:
    if values is None:
        return list(default)
    if len(values) != batch_size:
        raise ValueError(f"{owner} has {len(values)} {what}s, one per image, but the batch has {batch_size} images")
    return values


class Diversity(InputObjective):
    r"""Push the images of one unit apart: minus the cosine similarity of their Gram matrices.

    For each image, the Gram matrix of the layer's activations, :math:`G_i = A_i A_i^\top` with
    :math:`A_i` the ``(C, H·W)`` activation map (a ``(B, C)`` layer gives :math:`a_i a_i^\top`), is
    flattened and scaled to unit length. Row ``i`` scores

    .. math:: f_i = -\frac{1}{n_g} \sum_{j \ne i,\ g_j = g_i} \langle \hat G_i, \hat G_j \rangle

    over the other rows ``j`` of its group ``g_i`` (``n_g`` rows). Maximizing it makes the images'
    "styles" (which channels fire together) unlike each other, as in Olah et al. (2017). The sum of a
    group's rows is Lucid's/Lucent's ``diversity(layer)`` of that group, so Lucent's
    ``channel(layer, n) - 1e2 * diversity(layer)`` (a loss) reads here ``a + 1e2 * Diversity(layer)``.
    A row alone in its group scores 0.

    **It couples rows** (:attr:`couples_rows`): row ``i``'s score depends on the other images of its
    group, so all of a group's rows must be scored together (one process, one call); the groups are the
    targets, sliced with the rows like any target. Use it inside one :class:`~inputopt.InputOptimization`
    with the copies of a unit in one batch, e.g. four copies of channel 3 (each copy starts from its own
    noise, the unit's occurrence being part of its seed).

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.
        group: one group id per image (e.g. the unit each image visualizes); ``None``: all images are
            one group.

    Example:
        >>> acts = torch.zeros(3, 2, 1, 1); acts[0, 0] = 1.0; acts[1, 0] = 2.0; acts[2, 1] = 1.0
        >>> Diversity("a")({"a": acts})  # images 0 and 1 have the same (normalized) Gram matrix
        tensor([-0.3333, -0.3333,  0.0000])
        >>> Diversity("a", group=[0, 0, 1])({"a": acts})
        tensor([-0.5000, -0.5000,  0.0000])
        >>> from inputopt.objectives import ChannelSum
        >>> objective = ChannelSum("a", channel=[3, 3, 3, 3]) + 1e2 * Diversity("a", group=[3, 3, 3, 3])
    """

    def __init__(self, layer: str | None, group: Sequence[int] | None = None) -> None:
        super().__init__(layer)
        self.group = group
        self._groups = None if group is None else _int_list(group, "group")

    @property
    def couples_rows(self) -> bool:
        return True

    @property
    def num_rows(self) -> int | None:
        return len(self._groups) if self._groups is not None and len(self._groups) > 1 else None

    def row_groups(self, batch_size: int) -> list[int]:
        return _per_row(self._groups, batch_size, "group", type(self).__name__, [0] * batch_size)

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The group of each row, a ``(B,)`` long tensor."""
        act = _float_activation(activations, self.layer)
        return torch.tensor(self.row_groups(act.shape[0]), dtype=torch.long, device=act.device)

    def forward(self, activations: dict[str, Tensor], groups: Tensor) -> Tensor:
        act = _float_activation(activations, self.layer)
        with torch.autocast(device_type=act.device.type, enabled=False):  # sums of many products
            flat = act.reshape(act.shape[0], act.shape[1], -1)
            grams = F.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
            similarity = grams @ grams.T
        groups = groups.to(act.device)
        same = groups[:, None] == groups[None, :]
        others = same & ~torch.eye(len(groups), dtype=torch.bool, device=act.device)
        return 0.0 - (similarity * others).sum(1) / same.sum(1)  # 0.0 - ...: a row alone scores +0, not -0


class Alignment(InputObjective):
    r"""Keep neighbouring images of a sequence alike: minus their distance in a layer, decaying with the gap.

    For interpolations (a batch that moves from one objective to another), where analogous things should
    be drawn in the same place. With :math:`p_i` the position of image ``i`` in the sequence and
    :math:`d = |p_i - p_j|`, row ``i`` scores

    .. math:: f_i = -\frac{1}{2} \sum_{j:\ 1 \le d \le D} \frac{\operatorname{mean}\big((A_i - A_j)^2\big)}{r^{d}}

    with ``D = max_distance`` and ``r = decay_ratio``; the mean runs over the layer's elements. Each pair
    is counted half in each of its two rows, so the rows sum to minus Lucent's ``alignment(layer,
    decay_ratio)`` (a penalty, for positions ``0..B−1`` and ``D = 4``): Lucent's ``obj +
    alignment(layer)`` reads here ``obj + Alignment(layer)``.

    **It couples rows** (:attr:`couples_rows`): the rows within ``max_distance`` of each other (a chain
    of them is one group, :meth:`row_groups`) must be scored together. The positions are the targets, so
    a subset of rows keeps its own positions and the order of the rows in the batch does not matter.

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.
        position: the position of each image in the sequence; ``None``: the row index ``0..B−1``.
        decay_ratio: ``r``, how much weaker the pull between images one step further apart (> 0).
        max_distance: ``D``, the largest gap between two images that are compared (>= 1).

    Example:
        >>> acts = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 4.0]])
        >>> Alignment(None)({"": acts})  # pairs (0, 1) and (1, 2) at gap 1, (0, 2) at gap 2
        tensor([-1.7500, -2.5000, -3.2500])
    """

    def __init__(self, layer: str | None, position: Sequence[int] | None = None, decay_ratio: float = 2.0,
                 max_distance: int = 4) -> None:
        super().__init__(layer)
        if (isinstance(decay_ratio, bool) or not isinstance(decay_ratio, (int, float))
                or not math.isfinite(decay_ratio) or decay_ratio <= 0):
            raise ValueError(f"decay_ratio must be a finite number > 0, got {decay_ratio!r}")
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 1:
            raise ValueError(f"max_distance must be an int >= 1, got {max_distance!r}")
        self.position = position
        self.decay_ratio = float(decay_ratio)
        self.max_distance = max_distance
        self._positions = None if position is None else _int_list(position, "position")

    @property
    def couples_rows(self) -> bool:
        return True

    @property
    def num_rows(self) -> int | None:
        return len(self._positions) if self._positions is not None and len(self._positions) > 1 else None

    def _row_positions(self, batch_size: int) -> list[int]:
        return _per_row(self._positions, batch_size, "position", type(self).__name__, range(batch_size))

    def row_groups(self, batch_size: int) -> list[int]:
        """Chains of positions no more than ``max_distance`` apart share a group."""
        positions = self._row_positions(batch_size)
        groups, group, previous = [0] * batch_size, 0, None
        for row in sorted(range(batch_size), key=positions.__getitem__):
            if previous is not None and positions[row] - positions[previous] > self.max_distance:
                group += 1
            groups[row], previous = group, row
        return groups

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The position of each row, a ``(B,)`` long tensor."""
        act = _float_activation(activations, self.layer)
        return torch.tensor(self._row_positions(act.shape[0]), dtype=torch.long, device=act.device)

    def forward(self, activations: dict[str, Tensor], positions: Tensor) -> Tensor:
        act = _float_activation(activations, self.layer)
        flat = act.reshape(act.shape[0], -1)
        distance = torch.stack([(flat - row).pow(2).mean(1) for row in flat])  # (B, B) mean squared distances
        positions = positions.to(act.device)
        gap = (positions[:, None] - positions[None, :]).abs()
        weight = torch.where((gap >= 1) & (gap <= self.max_distance),
                             self.decay_ratio ** -gap.to(flat.dtype), torch.zeros((), dtype=flat.dtype,
                                                                                   device=flat.device))
        return -0.5 * (weight * distance).sum(1)
