"""The abstract objective: what the optimization maximizes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor, nn

from inputopt._config import Configurable
from inputopt._repr import init_args_repr
from inputopt.capture import OUTPUT

__all__ = ["ALL", "InputObjective", "UnitsObjective"]

Forward = Callable[[Tensor], dict[str, Tensor]]

#: The ``units`` value that means every unit (channel or class) of the layer, resolved from its real shape.
ALL = "all"


class InputObjective(Configurable, nn.Module, ABC):
    """A score to maximize, one value per image: ``forward(activations) -> (B,)``.

    A subclass names the layer it reads and implements :meth:`forward`, which receives a dict from
    layer name to that layer's output and returns an unreduced ``(B,)`` tensor; row ``i`` scores image
    ``i`` and may target its own unit. The base class checks that contract, casts the result to
    float32 and builds the ``repr``. Layers are dotted names from ``network.named_modules()``; ``None``
    or ``""`` means the network's output.

    Inside ``with objective.rows(index):`` the objective scores only the rows ``index`` of its batch
    (the activations passed in are those rows' only): objectives with per-row targets read them through
    :meth:`row_targets`, so that each row keeps its own target. This is how a process of a multi-device
    run scores only the rows it owns.

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
        self._rows: Tensor | None = None

    @contextmanager
    def rows(self, index: Tensor | Sequence[int]) -> Iterator[InputObjective]:
        """Score only rows ``index`` of the full batch: per-row targets are taken at those rows.

        Example:
            >>> from inputopt.objectives import ChannelSum
            >>> objective = ChannelSum("features.3", channel=[0, 1, 2])
            >>> act = torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 1, 1)  # channel c has value c
            >>> with objective.rows([1, 2]):
            ...     objective({"features.3": act})
            tensor([1., 2.])
        """
        previous = getattr(self, "_rows", None)
        self._rows = torch.as_tensor(index, dtype=torch.long).flatten()
        try:
            yield self
        finally:
            self._rows = previous

    def row_targets(self, targets: Tensor, batch_size: int, what: str = "unit") -> Tensor:
        """Per-row targets ``(batch_size,)`` from one target (shared by all rows) or one per row.

        Inside :meth:`rows`, a per-row ``targets`` is indexed at the selected rows.

        Example:
            >>> class Scores(InputObjective):
            ...     def forward(self, activations):
            ...         return activations[""].flatten(1).sum(1)
            >>> objective = Scores()
            >>> with objective.rows([0, 2]):
            ...     objective.row_targets(torch.tensor([5, 6, 7]), 2).tolist()
            [5, 7]
        """
        rows = getattr(self, "_rows", None)
        if targets.numel() == 1:
            return targets.expand(batch_size)
        if rows is not None:
            if rows.numel() != batch_size:
                raise ValueError(f"{type(self).__name__} scores rows {rows.tolist()} but got {batch_size} images")
            return targets[rows.to(targets.device)]
        if targets.numel() != batch_size:
            raise ValueError(f"{type(self).__name__} has {targets.numel()} {what}s, one per image, "
                             f"but the batch has {batch_size} images")
        return targets

    @property
    def resolved(self) -> bool:
        """``False`` while targets still depend on layer shapes (e.g. ``units="all"``): see :meth:`resolve`."""
        return True

    def resolve(self, activations: dict[str, Tensor]) -> None:
        """Fix shape-dependent targets from real activations (any batch size; default: nothing to do)."""

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

    ``units`` is an int (every row targets it), a list with one entry per row, or ``"all"``: every unit
    of the layer, one row each, resolved from the layer's real output shape by :meth:`resolve` (which
    :class:`~inputopt.InputOptimization` calls with a one-image probe). The per-row indices are kept as
    a tensor so that :meth:`select` gathers all rows in one vectorized operation.

    Example:
        >>> from inputopt.objectives import ChannelSum
        >>> objective = ChannelSum("features.3", channel="all")
        >>> objective.resolved
        False
        >>> objective.resolve({"features.3": torch.zeros(1, 4, 5, 5)})
        >>> objective.units, objective.num_rows
        ([0, 1, 2, 3], 4)
    """

    #: The name of the constructor argument holding the units (what ``inputopt sweep`` overrides per chunk).
    units_argument: str = "units"

    def __init__(self, layer: str | None, units: int | Sequence[int] | Literal["all"]) -> None:
        super().__init__(layer)
        if units == ALL:
            self._unit_list: list[int] | None = None
            self.register_buffer("unit_index", torch.empty(0, dtype=torch.long), persistent=False)
            return
        if isinstance(units, int):
            unit_list = [units]
        elif isinstance(units, Sequence) and not isinstance(units, str):
            unit_list = list(units)
        else:
            unit_list = []
        if not unit_list or not all(isinstance(u, int) and not isinstance(u, bool) for u in unit_list):
            raise ValueError(f"units must be an int, a non-empty list of ints or {ALL!r}, got {units!r}")
        self._unit_list = unit_list
        self.register_buffer("unit_index", torch.tensor(unit_list, dtype=torch.long), persistent=False)

    @property
    def resolved(self) -> bool:
        return self._unit_list is not None

    def resolve(self, activations: dict[str, Tensor]) -> None:
        if self._unit_list is not None:
            return
        act = activations[self.layer]
        if act.ndim < 2:
            raise ValueError(f"layer {self.layer!r} output has shape {tuple(act.shape)}; "
                             f"{type(self).__name__} needs (B, C, ...) to resolve units={ALL!r}")
        self._unit_list = list(range(act.shape[1]))
        self.unit_index = torch.arange(act.shape[1], dtype=torch.long, device=self.unit_index.device)

    def _require_resolved(self) -> list[int]:
        if self._unit_list is None:
            raise RuntimeError(f"{type(self).__name__}(units={ALL!r}) does not know its layer's size yet: call "
                               f"resolve() with activations of {self.layer!r} (InputOptimization does)")
        return self._unit_list

    @property
    def units(self) -> list[int]:
        """The target units, one per row (a single unit when all rows share it)."""
        return list(self._require_resolved())

    @property
    def num_rows(self) -> int | None:
        units = self._require_resolved()
        return len(units) if len(units) > 1 else None

    def row_keys(self, batch_size: int) -> list[int]:
        return self._units_for(batch_size).tolist()

    def _units_for(self, batch_size: int) -> Tensor:
        self._require_resolved()
        return self.row_targets(self.unit_index, batch_size)

    def check_units(self, activation: Tensor, what: str = "unit") -> None:
        """Raise if a unit is outside ``[0, activation.shape[1])``."""
        if activation.ndim < 2:
            raise ValueError(f"layer {self.layer!r} output has shape {tuple(activation.shape)}; "
                             f"{type(self).__name__} needs (B, C, ...)")
        size = activation.shape[1]
        bad = [u for u in self._require_resolved() if not 0 <= u < size]
        if bad:
            raise ValueError(f"{what} {bad[0]} is out of range for layer {self.layer!r}, which has {size} "
                             f"{what}s: valid {what}s are 0..{size - 1}")

    def select(self, activation: Tensor) -> Tensor:
        """Row ``i``'s slice ``activation[i, units[i]]``, shape ``(B, *activation.shape[2:])``."""
        units = self._units_for(activation.shape[0])
        rows = torch.arange(activation.shape[0], device=activation.device)
        return activation[rows, units.to(activation.device)]
