"""Directions in a layer's channel space: the dot product or cosine of the activations with a vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import InputObjective

__all__ = ["Direction"]


class Direction(InputObjective):
    r"""How far a layer's activation vector points along a direction ``v`` of its channel space.

    At a position ``(row, column)``, with :math:`a_i` the ``C`` activations of image ``i`` there, row ``i``
    scores :math:`\cos(a_i, v_i)` (``cosine=True``) or :math:`a_i \cdot v_i` (``cosine=False``). Without a
    position the score is the mean of that value over every position of the map (for a flat ``(B, C)``
    layer: the value itself). ``v`` is used as given (not normalized) in the dot product.

    The vectors are the objective's targets, data like units: one for every image, or one per image.
    Lucent's ``direction_neuron(layer, v, x, y)`` is ``Direction(layer, v, position=(y, x))`` (Lucent
    uses the cosine and averages over the batch; its default position is the centre), and Lucid's
    ``direction(layer, v)`` is ``Direction(layer, v, cosine=False)`` (the mean of the dot product over
    positions).

    Args:
        layer: dotted layer name from ``named_modules()``; ``None`` is the network's output.
        direction: a vector of ``C`` numbers (every image), or a list of ``B`` of them (one per image);
            a tensor is stored as a list, so the config stays plain data.
        position: ``(row, column)`` in the activation map; ``None``: the mean over the whole map.
        cosine: the cosine similarity (``True``) or the dot product (``False``).

    Example:
        >>> acts = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
        >>> Direction(None, [1.0, 0.0])({"": acts})
        tensor([0.6000, 1.0000])
        >>> Direction(None, [[2.0, 0.0], [0.0, 1.0]], cosine=False)({"": acts})
        tensor([6., 0.])
    """

    def __init__(self, layer: str | None, direction: Sequence[float] | Sequence[Sequence[float]] | Tensor,
                 position: Sequence[int] | None = None, cosine: bool = True) -> None:
        super().__init__(layer)
        try:
            vectors = torch.as_tensor(direction, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"direction must be a list of numbers or a list of such lists, got {direction!r}") \
                from error
        if vectors.ndim not in (1, 2) or vectors.shape[-1] == 0 or (vectors.ndim == 2 and vectors.shape[0] == 0):
            raise ValueError(f"direction must be one vector (C,) or one per image (B, C), got shape "
                             f"{tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("direction must be finite")
        if cosine and (vectors.abs().sum(-1) == 0).any():
            raise ValueError("a zero direction has no cosine: give a non-zero vector")
        if position is not None and (len(position) != 2 or not all(isinstance(p, int) for p in position)):
            raise ValueError(f"position must be (row, column) ints, got {position!r}")
        if isinstance(direction, Tensor):  # the config keeps plain data, not a tensor
            self._init_args["direction"] = direction.tolist()
        self.direction = vectors.tolist()
        self.position = None if position is None else tuple(position)
        self.cosine = bool(cosine)
        self._vectors = vectors.view(-1, vectors.shape[-1])

    @property
    def num_rows(self) -> int | None:
        return self._vectors.shape[0] if self._vectors.shape[0] > 1 else None

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The direction of each row, a ``(B, C)`` float tensor, checked against the layer's shape."""
        act = activations[self.layer]
        if act.ndim not in (2, 4):
            raise ValueError(f"Direction needs a (B, C) or (B, C, H, W) output; layer {self.layer!r} gives "
                             f"{tuple(act.shape)}")
        batch, channels = act.shape[:2]
        if self._vectors.shape[1] != channels:
            raise ValueError(f"the direction has {self._vectors.shape[1]} numbers, but layer {self.layer!r} has "
                             f"{channels} channels")
        if act.ndim == 2 and self.position is not None:
            raise ValueError(f"position={self.position} given, but layer {self.layer!r} has no spatial map: "
                             f"its output is {tuple(act.shape)}")
        if act.ndim == 4 and self.position is not None:
            height, width = act.shape[-2:]
            row, col = self.position
            if not (0 <= row < height and 0 <= col < width):
                raise ValueError(f"position {self.position} is outside layer {self.layer!r}'s {height}x{width} "
                                 f"map: valid rows 0..{height - 1}, columns 0..{width - 1}")
        rows = self._vectors.shape[0]
        if rows not in (1, batch):
            raise ValueError(f"Direction has {rows} directions, one per image, but the batch has {batch} images")
        dtype = torch.float64 if act.dtype == torch.float64 else torch.float32
        return self._vectors.to(device=act.device, dtype=dtype).expand(batch, -1).clone()

    def forward(self, activations: dict[str, Tensor], vectors: Tensor) -> Tensor:
        act = activations[self.layer]
        act = act if act.dtype == torch.float64 else act.float()
        vectors = vectors.to(act)
        if act.ndim == 4:
            if self.position is not None:
                act = act[:, :, self.position[0], self.position[1]]
            else:
                vectors = vectors[:, :, None, None]
        if self.cosine:
            value = F.cosine_similarity(act, vectors, dim=1)
        else:
            value = (act * vectors).sum(1)
        return value.flatten(1).mean(1) if value.ndim == 3 else value
