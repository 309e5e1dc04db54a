"""Objectives on the activations of a layer: one unit, one channel's map, two channels together, the whole layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from inputopt.objectives.base import InputObjective, UnitsObjective, _as_row_targets, _int_list

__all__ = ["ChannelInteraction", "ChannelSum", "DeepDream", "UnitActivation"]


class UnitActivation(UnitsObjective):
    """The activation of one unit: channel ``unit`` at one spatial position (default: the map's centre).

    For a layer without spatial dimensions (a ``Linear``, e.g. the class logits) the unit is just the
    index into its features. ``unit`` may be a list, one entry per image.

    This is Lucent's ``neuron(layer, n, x, y)`` objective (one spatial position of a channel):
    ``UnitActivation(layer, unit=n, position=(y, x))``, positions being ``(row, column)``. Lucent's default
    position is also the centre, ``(H // 2, W // 2)`` on a square map; it averages over the batch and
    returns the negative (a loss), where this returns one score per image to maximize.

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

    def forward(self, activations: dict[str, Tensor], units: Tensor) -> Tensor:
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

    def forward(self, activations: dict[str, Tensor], channels: Tensor) -> Tensor:
        selected = self.select(activations[self.layer], channels)
        return selected.reshape(selected.shape[0], -1).sum(1)


class ChannelInteraction(InputObjective):
    r"""Two channels firing together: the mean over positions of the product of their maps.

    Row ``i`` scores :math:`\frac{1}{HW} \sum_{y, x} a_{c_1}(y, x)\, a_{c_2}(y, x)`, with :math:`a_c` the map
    of channel ``c`` of image ``i`` (for a flat ``(B, C)`` layer: :math:`a_{c_1} a_{c_2}`). The product is
    large only where both channels are, so maximizing it looks for what excites both at once (with two
    channels that can also be negative, a place where both are very negative scores high too). It is the
    joint activation of Lucent's ``channel_interaction(layer, c1, c2)``, the elementwise product of the two
    maps; the reduction over positions is a mean here, so the score does not grow with the map's size.

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.
        channel1: the first channel, or a list with one per image.
        channel2: the second channel, or a list with one per image.

    Example:
        >>> acts = torch.zeros(2, 3, 2, 2); acts[:, 0] = 2.0; acts[:, 1, 0, 0] = 3.0
        >>> ChannelInteraction("a", channel1=0, channel2=[1, 2])({"a": acts})
        tensor([1.5000, 0.0000])
    """

    def __init__(self, layer: str | None, channel1: int | Sequence[int], channel2: int | Sequence[int]) -> None:
        super().__init__(layer)
        self.channel1 = channel1
        self.channel2 = channel2
        self._channels = (_int_list(channel1, "channel1"), _int_list(channel2, "channel2"))
        counts = {len(c) for c in self._channels} - {1}
        if len(counts) > 1:
            raise ValueError(f"channel1 and channel2 have one entry per image, but their lengths differ: "
                             f"{len(self._channels[0])} and {len(self._channels[1])}")

    @property
    def num_rows(self) -> int | None:
        rows = max(len(c) for c in self._channels)
        return rows if rows > 1 else None

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The two channels of each row, a ``(B, 2)`` long tensor, checked against the layer's size."""
        act = activations[self.layer]
        if act.ndim not in (2, 4):
            raise ValueError(f"ChannelInteraction needs a (B, C) or (B, C, H, W) output; layer {self.layer!r} "
                             f"gives {tuple(act.shape)}")
        size = act.shape[1]
        for name, channels in zip(("channel1", "channel2"), self._channels):
            bad = [c for c in channels if not 0 <= c < size]
            if bad:
                raise ValueError(f"{name} {bad[0]} is out of range for layer {self.layer!r}, which has {size} "
                                 f"channels: valid channels are 0..{size - 1}")
        batch = act.shape[0]
        return torch.stack([_as_row_targets(c, batch, name, type(self).__name__)
                            for name, c in zip(("channel1", "channel2"), self._channels)], 1).to(act.device)

    def forward(self, activations: dict[str, Tensor], channels: Tensor) -> Tensor:
        act = activations[self.layer]
        act = act if act.dtype == torch.float64 else act.float()
        first = UnitsObjective.select(act, channels[:, 0])
        second = UnitsObjective.select(act, channels[:, 1])
        return (first * second).reshape(act.shape[0], -1).mean(1)


class DeepDream(InputObjective):
    r"""The energy of a whole layer: the mean of its squared activations, :math:`\frac{1}{N}\sum_k a_k^2`.

    The mean runs over the layer's ``N`` elements (channels and positions) of each image, so the score
    does not grow with the map's size. It is Lucent's and Lucid's ``deepdream(layer)`` (the mean of
    ``layer ** 2``; Lucent negates it, as a loss, and averages over the batch too): whatever the layer
    detects, the image amplifies.

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.

    Example:
        >>> acts = torch.tensor([[1.0, -3.0], [2.0, 0.0]])
        >>> DeepDream(None)({"": acts})
        tensor([5., 2.])
    """

    def __init__(self, layer: str | None) -> None:
        super().__init__(layer)

    def forward(self, activations: dict[str, Tensor]) -> Tensor:
        act = activations[self.layer]
        act = act if act.dtype == torch.float64 else act.float()
        return act.reshape(act.shape[0], -1).pow(2).mean(1)
