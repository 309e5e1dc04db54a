"""Receptive fields computed from the network itself: the input region that can influence each unit of a layer.

The probe is structural, not numerical: a copy of the network in float64 and eval mode runs on images in which
one input row (or column) is NaN. IEEE arithmetic carries a NaN through every operation that reads it (a
convolution, whatever its weights, ``NaN · 0`` included; pooling; ReLU and clamps; normalization; residual sums;
attention's softmax), and through nothing else, so a unit's output is NaN exactly when the row can influence it.
A gradient probe cannot promise that: a dead ReLU, a saturated ReLU6 or a max-pool's argmax give zero gradients
on paths that exist. The rows and the columns that reach a unit give its field's bounding box: exact for
convolutions and pooling of any kernel, stride, padding, dilation and branching (residual blocks, concatenated
branches of other kernel sizes, whose channels get their own fields), and the whole image where the layer is
global (attention, global pooling, a linear layer after a flatten). The probe runs on the CPU (deterministic
kernels; no Winograd or FFT convolution mixing neighbouring pixels) at the images' real size, so fields are
clipped at the borders as the data's are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ReceptiveField", "crop_box", "receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive fields of every unit of a layer, as boxes of input pixels.

    Attributes:
        boxes: ``(*unit_shape, 4)`` long: for every element of the layer's output (per sample: ``(C, h, w)``
            for a map, ``(F,)`` for features, ``(N, D)`` for tokens), the box ``[top, left, bottom, right)``
            of the input pixels that can influence it (``[-1, -1, -1, -1]``: none can).
        image_size: ``(H, W)`` of the images probed.
    """

    boxes: Tensor
    image_size: tuple[int, int]

    @property
    def is_global(self) -> bool:
        """Whether every unit of the layer sees the whole image."""
        height, width = self.image_size
        return bool((self.boxes == torch.tensor([0, 0, height, width])).all())

    @property
    def size(self) -> tuple[int, int]:
        """The largest field's ``(height, width)`` in pixels: a unit's full field, where the border clips none."""
        return (int((self.boxes[..., 2] - self.boxes[..., 0]).max()), int((self.boxes[..., 3] - self.boxes[..., 1]).max()))

    def box(self, unit: int, position: Sequence[int] | None = None) -> tuple[int, int, int, int]:
        """The ``(top, left, bottom, right)`` box of a unit (a channel or a feature) at a map ``position``
        (``(y, x)``; ``None`` for a ``(B, F)`` layer, or for the union over the unit's positions).

        Example:
            >>> field = receptive_field(nn.Conv2d(1, 1, 3, padding=1), "", (1, 8, 8))
            >>> field.box(0, (4, 4)), field.box(0, (0, 0)), field.box(0)
            ((3, 3, 6, 6), (0, 0, 2, 2), (0, 0, 8, 8))
        """
        boxes = self.boxes[unit]
        if position is not None:
            boxes = boxes[tuple(int(p) for p in position)]
        boxes = boxes.reshape(-1, 4)
        boxes = boxes[boxes[:, 0] >= 0]
        if not len(boxes):
            return (-1, -1, -1, -1)
        return (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))


@torch.no_grad()
def receptive_field(network: nn.Module, layer: str, image_shape: Sequence[int], normalize: nn.Module | None = None,
                    batch_size: int = 16) -> ReceptiveField:
    """The receptive field of every unit of ``layer``: the box of input pixels that can change its value.

    Computed by NaN probes (see the module's notes): ``H + W`` forward passes, up to ``layer`` only, of a float64
    copy of the network in eval mode, on the CPU. Exact for any stack of convolutions and pooling; the whole
    image where the layer is global.

    Args:
        network: the network (not changed: a copy is probed).
        layer: dotted layer name from ``named_modules()`` (``""``: the output).
        image_shape: ``(C, H, W)`` of the images.
        normalize: the module applied to the images before the network, if any.
        batch_size: probe images per forward pass.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1),
        ...                     nn.AdaptiveAvgPool2d(1))
        >>> field = receptive_field(net, "2", (1, 16, 16))
        >>> field.size, field.box(0, (3, 3))   # 3x3 conv, 2x2 pool, 3x3 conv at stride 2: 3 + 1 + 2·2 = 8 pixels
        ((8, 8), (3, 3, 11, 11))
        >>> receptive_field(net, "3", (1, 16, 16)).is_global
        True
    """
    from inputopt.capture import OUTPUT, evaluate

    if len(image_shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in image_shape):
        raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    channels, height, width = image_shape
    probe_net = copy.deepcopy(network).double().cpu().eval()
    probe_norm = copy.deepcopy(normalize).double().cpu().eval() if normalize is not None else None
    key = layer or OUTPUT

    def reached(axis: int, lines: Tensor) -> Tensor:
        """``(len(lines), *unit_shape)`` bool: whether a NaN in input row/column ``lines[i]`` reaches each unit."""
        images = torch.full((len(lines), channels, height, width), 0.5, dtype=torch.float64)
        rows = torch.arange(len(lines))
        if axis == 0:
            images[rows, :, lines, :] = float("nan")
        else:
            images[rows, :, :, lines] = float("nan")
        output = evaluate(probe_net, images, [key], probe_norm)[key]
        return torch.isnan(output)

    def extent(axis: int, size: int) -> tuple[Tensor, Tensor]:
        first = last = None
        for start in range(0, size, batch_size):
            lines = torch.arange(start, min(start + batch_size, size))
            hit = reached(axis, lines)
            index = lines.view(-1, *([1] * (hit.ndim - 1))).expand_as(hit)
            low = torch.where(hit, index, size).amin(0)
            high = torch.where(hit, index + 1, -1).amax(0)
            first = low if first is None else torch.minimum(first, low)
            last = high if last is None else torch.maximum(last, high)
        return first, last

    top, bottom = extent(0, height)
    left, right = extent(1, width)
    boxes = torch.stack([top, left, bottom, right], -1).long()
    boxes[(bottom < 0) | (right < 0)] = -1  # no input reaches it (a constant)
    return ReceptiveField(boxes, (height, width))


def crop_box(image: Tensor, box: Sequence[int], size: int | Sequence[int] | None = None) -> tuple[int, int, int, int]:
    """Where to crop ``image`` to show a receptive field ``box``: a ``size`` crop centred on the box and shifted
    to stay inside the image (``None``: the box itself).

    A field clipped by the border keeps its full size this way: give its unclipped :attr:`ReceptiveField.size`.

    Args:
        image: ``(C, H, W)`` (only its size is read).
        box: ``(top, left, bottom, right)`` in pixels (``bottom``/``right`` excluded).
        size: the crop's side, or ``(height, width)``; at most the image's.

    Returns:
        ``(top, left, bottom, right)`` of the crop.

    Example:
        >>> crop_box(torch.zeros(1, 32, 32), (0, 10, 5, 18), 8)   # a field clipped by the top border
        (0, 10, 8, 18)
    """
    height, width = image.shape[-2:]
    top, left, bottom, right = (int(b) for b in box)
    if top < 0:
        return (0, 0, height, width)
    if size is None:
        return (top, left, bottom, right)
    side_h, side_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    side_h, side_w = min(side_h, height), min(side_w, width)
    if side_h < 1 or side_w < 1:
        raise ValueError(f"crop size must be >= 1, got {size!r}")
    y = min(max(round((top + bottom - side_h) / 2), 0), height - side_h)
    x = min(max(round((left + right - side_w) / 2), 0), width - side_w)
    return (y, x, y + side_h, x + side_w)
