"""The abstract objective: what the optimization maximizes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from inputopt._config import Configurable
from inputopt._repr import init_args_repr
from inputopt.capture import OUTPUT

__all__ = ["InputObjective", "UnitsObjective"]

Forward = Callable[[Tensor], dict[str, Tensor]]


class InputObjective(Configurable, nn.Module, ABC):
    """A score to maximize, one value per image: ``forward(activations) -> (B,)``.

    A subclass names the layer it reads and implements :meth:`forward`, which receives a dict from
    layer name to that layer's output and returns an unreduced ``(B,)`` tensor; row ``i`` scores image
    ``i`` and may target its own unit. The base class checks that contract, casts the result to
    float32 and builds the ``repr``. Layers are dotted names from ``network.named_modules()``; ``None``
    or ``""`` means the network's output.

    Example:
        >>> class MeanActivation(InputObjective):
        ...     def forward(self, activations):
        ...         return activations[self.layer].flatten(1).mean(1)
        >>> objective = MeanActivation("features.3")
        >>> objective({"features.3": torch.ones(2, 8, 4, 4)})
        tensor([1., 1.])
    """

    def __init__(self, layer: str | None = None) -> None:
        super().__init__()
        self.layer = OUTPUT if layer is None else layer

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers whose outputs :meth:`forward` reads."""
        return (self.layer,)

    @property
    def num_rows(self) -> int | None:
        """How many images this objective defines (one per target unit), or ``None`` if any number."""
        return None

    def row_keys(self, batch_size: int) -> list[int]:
        """An integer per row naming what the row targets (its unit), used to seed its initial noise."""
        return list(range(batch_size))

    def prepare(self, forward: Forward, x: Tensor) -> None:
        """Called once before optimizing, with the starting input: check targets against real shapes.

        Args:
            forward: maps an input to the dict of activations of :attr:`layers`.
            x: the starting input, shape ``(B, C, H, W)``.
        """
        with torch.no_grad():
            self.check(forward(x))

    def check(self, activations: dict[str, Tensor]) -> None:
        """Raise a ``ValueError`` if the targets do not fit the activations (default: nothing to check)."""

    def is_done(self, activations: dict[str, Tensor]) -> Tensor | None:
        """Per-row ``(B,)`` bool: rows whose goal is reached (e.g. an adversarial label flip), or ``None``."""
        return None

    @abstractmethod
    def forward(self, activations: dict[str, Tensor]) -> Tensor:
        """Return the ``(B,)`` score of each image, to be maximized."""

    def __call__(self, activations: dict[str, Tensor]) -> Tensor:
        missing = [name for name in self.layers if name not in activations]
        if missing:
            raise KeyError(f"{type(self).__name__} reads layers {missing}, which were not captured")
        score = super().__call__(activations)
        batch = next(iter(activations[name] for name in self.layers)).shape[0]
        if not isinstance(score, Tensor) or score.shape != (batch,):
            shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise ValueError(f"{type(self).__name__}.forward must return one score per image, shape "
                             f"({batch},); got {shape}")
        return score.float()

    def extra_repr(self) -> str:
        return init_args_repr(self)


class UnitsObjective(InputObjective):
    """Base for objectives that target one unit (channel or class index) per row.

    ``units`` is an int (every row targets it) or a list with one entry per row; the per-row indices
    are kept as a tensor so that :meth:`select` gathers all rows in one vectorized operation.
    """

    def __init__(self, layer: str | None, units: int | Sequence[int]) -> None:
        super().__init__(layer)
        if isinstance(units, int):
            unit_list = [units]
        elif isinstance(units, Sequence) and not isinstance(units, str):
            unit_list = list(units)
        else:
            unit_list = []
        if not unit_list or not all(isinstance(u, int) and not isinstance(u, bool) for u in unit_list):
            raise ValueError(f"units must be an int or a non-empty list of ints, got {units!r}")
        self._unit_list = unit_list
        self.register_buffer("unit_index", torch.tensor(unit_list, dtype=torch.long), persistent=False)

    @property
    def num_rows(self) -> int | None:
        return len(self._unit_list) if len(self._unit_list) > 1 else None

    def row_keys(self, batch_size: int) -> list[int]:
        return self._units_for(batch_size).tolist()

    def _units_for(self, batch_size: int) -> Tensor:
        if self.unit_index.numel() == 1:
            return self.unit_index.expand(batch_size)
        if self.unit_index.numel() != batch_size:
            raise ValueError(f"{type(self).__name__} has {self.unit_index.numel()} units, one per image, "
                             f"but the batch has {batch_size} images")
        return self.unit_index

    def check_units(self, activation: Tensor, what: str = "unit") -> None:
        """Raise if a unit is outside ``[0, activation.shape[1])``."""
        if activation.ndim < 2:
            raise ValueError(f"layer {self.layer!r} output has shape {tuple(activation.shape)}; "
                             f"{type(self).__name__} needs (B, C, ...)")
        size = activation.shape[1]
        bad = [u for u in self._unit_list if not 0 <= u < size]
        if bad:
            raise ValueError(f"{what} {bad[0]} is out of range for layer {self.layer!r}, which has {size} "
                             f"{what}s: valid {what}s are 0..{size - 1}")

    def select(self, activation: Tensor) -> Tensor:
        """Row ``i``'s slice ``activation[i, units[i]]``, shape ``(B, *activation.shape[2:])``."""
        units = self._units_for(activation.shape[0])
        rows = torch.arange(activation.shape[0], device=activation.device)
        return activation[rows, units.to(activation.device)]
