"""Objectives on the activations of a layer: one unit, or the sum of one channel's map."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from inputopt.objectives.base import UnitsObjective

__all__ = ["ChannelSum", "UnitActivation"]


class UnitActivation(UnitsObjective):
    """The activation of one unit: channel ``unit`` at one spatial position (default: the map's centre).

    For a layer without spatial dimensions (a ``Linear``, e.g. the class logits) the unit is just the
    index into its features. ``unit`` may be a list, one entry per image.

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.
        unit: channel (or feature) index, a list with one index per image, or ``"all"``: every
            channel of the layer, one image each.
        position: ``(row, column)`` in the activation map; ``None`` is the centre ``(H // 2, W // 2)``.

    Example:
        >>> import torch
        >>> objective = UnitActivation("features.3", unit=[0, 2])
        >>> act = torch.zeros(2, 4, 5, 5); act[0, 0, 2, 2] = 1.0; act[1, 2, 2, 2] = 3.0
        >>> objective({"features.3": act})
        tensor([1., 3.])
    """

    units_argument = "unit"

    def __init__(self, layer: str | None, unit: int | Sequence[int] | Literal["all"],
                 position: Sequence[int] | None = None) -> None:
        super().__init__(layer, unit)
        self.unit = unit
        if position is not None and (len(position) != 2 or not all(isinstance(p, int) for p in position)):
            raise ValueError(f"position must be (row, column) ints, got {position!r}")
        self.position = None if position is None else tuple(position)

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        act = activations[self.layer]
        if act.ndim == 4:
            height, width = act.shape[-2:]
            row, col = self._position(height, width)
            if not (0 <= row < height and 0 <= col < width):
                raise ValueError(f"position {self.position} is outside layer {self.layer!r}'s "
                                 f"{height}x{width} map: valid rows 0..{height - 1}, columns 0..{width - 1}")
        elif act.ndim == 2 and self.position is not None:
            raise ValueError(f"position={self.position} given, but layer {self.layer!r} has no spatial map: "
                             f"its output is {tuple(act.shape)}")
        elif act.ndim != 2:
            raise ValueError(f"UnitActivation needs a (B, C) or (B, C, H, W) output; layer {self.layer!r} "
                             f"gives {tuple(act.shape)}")
        return super().default_targets(activations)

    def _position(self, height: int, width: int) -> tuple[int, int]:
        return (height // 2, width // 2) if self.position is None else self.position

    def forward(self, activations: dict[str, Tensor], units: Tensor | None = None) -> Tensor:
        if units is None:
            units = self.default_targets(activations)
        selected = self.select(activations[self.layer], units)
        if selected.ndim == 3:
            row, col = self._position(*selected.shape[-2:])
            return selected[:, row, col]
        return selected


class ChannelSum(UnitsObjective):
    """The sum of one channel's whole activation map (for a flat ``(B, C)`` layer: the feature itself).

    Args:
        layer: dotted layer name from ``named_modules()``.
        channel: channel index, a list with one index per image, or ``"all"``: every channel of the
            layer, one image each.

    Example:
        >>> import torch
        >>> ChannelSum("features.3", channel=1)({"features.3": torch.ones(2, 4, 3, 3)})
        tensor([9., 9.])
    """

    units_argument = "channel"

    def __init__(self, layer: str | None, channel: int | Sequence[int] | Literal["all"]) -> None:
        super().__init__(layer, channel)
        self.channel = channel

    def forward(self, activations: dict[str, Tensor], channels: Tensor | None = None) -> Tensor:
        if channels is None:
            channels = self.default_targets(activations)
        selected = self.select(activations[self.layer], channels)
        return selected.reshape(selected.shape[0], -1).sum(1)
