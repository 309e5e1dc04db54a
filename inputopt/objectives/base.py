"""The abstract objective: what the optimization maximizes, and the algebra that combines objectives."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Literal, Union

import torch
from torch import Tensor

from inputopt.capture import OUTPUT
from inputopt.term import Term

__all__ = ["ALL", "InputObjective", "Targets", "UnitsObjective", "map_targets", "select_rows"]

#: The ``units`` value that means every unit (channel or class) of the layer, resolved from its real shape.
ALL = "all"

#: Per-row targets: a tensor whose first dimension is the batch, ``None`` (no targets), or a tuple of
#: targets (one entry per term of a :class:`~inputopt.objectives.Sum`).
Targets = Union[Tensor, None, tuple]


def map_targets(fn: Callable[[Tensor], Tensor], targets: Targets) -> Targets:
    """Apply ``fn`` to every tensor of ``targets`` (nested tuples and ``None`` kept as they are).

    Example:
        >>> map_targets(lambda t: t * 2, (torch.tensor([1, 2]), None))
        (tensor([2, 4]), None)
    """
    if targets is None:
        return None
    if isinstance(targets, Tensor):
        return fn(targets)
    return tuple(map_targets(fn, t) for t in targets)


def select_rows(targets: Targets, rows: Tensor | Sequence[int]) -> Targets:
    """The targets of rows ``rows`` only: how a subset of the batch keeps each row's own target.

    Example:
        >>> select_rows(torch.tensor([5, 6, 7]), [0, 2])
        tensor([5, 7])
    """
    return map_targets(lambda t: t[torch.as_tensor(rows, device=t.device)], targets)


def _int_list(value: int | Sequence[int], name: str) -> list[int]:
    """``value`` (an int or a non-empty list of ints) as a list; a ``ValueError`` naming ``name`` otherwise."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{name} must be an int or a non-empty list of ints, got {value!r}")
    return list(values)


def _as_row_targets(values: list[int], batch_size: int, what: str, owner: str) -> Tensor:
    """``values`` (one shared by all rows, or one per row) as a ``(batch_size,)`` long tensor."""
    if len(values) == 1:
        return torch.full((batch_size,), values[0], dtype=torch.long)
    if len(values) != batch_size:
        raise ValueError(f"{owner} has {len(values)} {what}s, one per image, but the batch has {batch_size} images")
    return torch.tensor(values, dtype=torch.long)


class InputObjective(Term):
    """A score to maximize, one value per image: ``forward(activations[, targets]) -> (B,)``.

    A subclass names the layers it reads and implements :meth:`forward`, which receives a dict from
    layer name to that layer's output and returns an unreduced ``(B,)`` tensor; row ``i`` scores image
    ``i``. The base class checks that contract, casts the result to float32 and builds the ``repr``.
    Layers are dotted names from ``network.named_modules()``; ``None`` or ``""`` is the network's output.

    **Targets are data.** An objective whose rows aim at different things (units, labels, target
    classes) receives them as a second argument, ``forward(activations, targets)``, a tensor with one
    entry per row. :meth:`default_targets` builds them from the constructor arguments (or from the
    starting images, e.g. the network's own prediction); the caller passes them in, sliced with the rows
    it scores, so a subclass never has to know which rows of a larger batch it sees. Called without
    targets, the base class resolves them through :meth:`default_targets` before calling
    :meth:`forward`, so a subclass's ``forward`` always receives them. An objective without targets
    (:meth:`default_targets` returns ``None``) writes ``forward(self, activations)``.

    Objectives add, subtract and scale: ``a - 0.5 * b`` is a :class:`~inputopt.objectives.Sum`.

    Example:
        >>> class MeanActivation(InputObjective):
        ...     def forward(self, activations):
        ...         return activations[self.layer].flatten(1).mean(1)
        >>> objective = MeanActivation("features.3")
        >>> objective({"features.3": torch.ones(2, 8, 4, 4)})
        tensor([1., 1.])
    """

    value_name = "score"

    def __init__(self, layer: str | None = None) -> None:
        super().__init__()
        self.layer = OUTPUT if layer is None else layer

    # -- what the objective reads and how many images it defines -------------------------------------
    @property
    def layers(self) -> tuple[str, ...]:
        """The layers whose outputs :meth:`forward` reads."""
        return (self.layer,)

    @property
    def resolved(self) -> bool:
        """``False`` while the number of rows depends on a layer's shape (``units="all"``): see :meth:`resolve`."""
        return True

    def resolve(self, activations: dict[str, Tensor]) -> None:
        """Fix shape-dependent settings from real activations of any batch size (default: nothing to do)."""

    @property
    def num_rows(self) -> int | None:
        """How many images this objective defines (one per target unit), or ``None`` if any number."""
        return None

    def row_keys(self, batch_size: int) -> list[int] | None:
        """An integer per row naming what it targets (its unit), which seeds its randomness; ``None``: by row."""
        return None

    def row_names(self, batch_size: int) -> list[str]:
        """A name per row for files and logs: ``<layer>-<unit>`` for objectives with units, else ``row-<i>``."""
        return [f"row-{i}" for i in range(batch_size)]

    @property
    def couples_rows(self) -> bool:
        """Whether a row's score depends on other rows' images (a batch term such as a diversity).

        ``False`` for almost every objective: row ``i`` scores image ``i`` alone. An objective that
        couples rows says which in :meth:`row_groups`; every row of a group must be scored in the same
        call (on one process), with its own target.
        """
        return False

    def row_groups(self, batch_size: int) -> list[int] | None:
        """A group id per row: rows with the same id may depend on each other; ``None``: no row does."""
        return None

    # -- targets --------------------------------------------------------------------------------------
    def default_targets(self, activations: dict[str, Tensor]) -> Targets:
        """The per-row targets for a batch whose (untransformed) activations are ``activations``.

        Called once on the starting images; checks the constructor's targets against the real layer
        shapes and raises a ``ValueError`` naming the valid range. Default: no targets (``None``).
        """
        return None

    def is_done(self, activations: dict[str, Tensor], targets: Targets = None) -> Tensor | None:
        """Per-row ``(B,)`` bool: rows whose goal is reached (e.g. an adversarial label flip), or ``None``."""
        return None

    # -- the score ------------------------------------------------------------------------------------
    @abstractmethod
    def forward(self, activations: dict[str, Tensor], *targets: Any) -> Tensor:
        """Return the ``(B,)`` score of each image, to be maximized."""

    def __call__(self, activations: dict[str, Tensor], targets: Targets = None) -> Tensor:
        """The checked ``(B,)`` score; ``targets=None`` means :meth:`default_targets` of ``activations``."""
        missing = [name for name in self.layers if name not in activations]
        if missing:
            raise KeyError(f"{type(self).__name__} reads layers {missing}, which were not captured")
        if targets is None:
            targets = self.default_targets(activations)
        score = super().__call__(activations) if targets is None else super().__call__(activations, targets)
        return self.per_image(score, activations[self.layers[0]].shape[0])

    # -- algebra --------------------------------------------------------------------------------------
    def __add__(self, other: InputObjective) -> InputObjective:
        from inputopt.objectives.combine import Sum

        if not isinstance(other, InputObjective):
            return NotImplemented
        return Sum.of([self, other], [1.0, 1.0])

    def __radd__(self, other: object) -> InputObjective:
        if isinstance(other, (int, float)) and other == 0:  # sum([a, b, ...]) starts from 0
            return self
        return NotImplemented

    def __mul__(self, factor: float) -> InputObjective:
        from inputopt.objectives.combine import Sum

        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        return Sum.of([self], [float(factor)])

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> InputObjective:
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            return NotImplemented
        return self * (1.0 / divisor)

    def __neg__(self) -> InputObjective:
        return self * -1.0

    def __sub__(self, other: InputObjective) -> InputObjective:
        if not isinstance(other, InputObjective):
            return NotImplemented
        return self + (-other)


class UnitsObjective(InputObjective):
    """Base for objectives that target one unit (channel, feature or class index) per row.

    ``units`` is an int (every row targets it), a list with one entry per row, or ``"all"``: every unit
    of the layer, one row each, resolved from the layer's real output shape by :meth:`resolve` (which
    :class:`~inputopt.InputOptimization` calls with a one-image probe). The units reach :meth:`forward`
    as a ``(B,)`` tensor (the targets), and :meth:`select` gathers every row's unit in one indexing.

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
            return
        if isinstance(units, int) and not isinstance(units, bool):
            unit_list = [units]
        elif isinstance(units, Sequence) and not isinstance(units, str):
            unit_list = list(units)
        else:
            unit_list = []
        if not unit_list or not all(isinstance(u, int) and not isinstance(u, bool) for u in unit_list):
            raise ValueError(f"units must be an int, a non-empty list of ints or {ALL!r}, got {units!r}")
        huge = [u for u in unit_list if not -2**63 <= u < 2**63]
        if huge:  # torch would raise an OverflowError that names no unit
            raise ValueError(f"unit {huge[0]} is out of range: units are indices of the layer's channels or "
                             f"features, far below 2**63")
        self._unit_list = unit_list

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

    @property
    def units(self) -> list[int]:
        """The target units, one per row (a single unit when all rows share it)."""
        if self._unit_list is None:
            raise RuntimeError(f"{type(self).__name__}(units={ALL!r}) does not know its layer's size yet: call "
                               f"resolve() with activations of {self.layer!r} (InputOptimization does)")
        return list(self._unit_list)

    def with_units(self, units: int | Sequence[int] | Literal["all"]) -> UnitsObjective:
        """The same objective (class and constructor arguments) with other units: a sweep's chunk.

        Example:
            >>> from inputopt.objectives import UnitActivation
            >>> UnitActivation("features.3", unit="all", position=(1, 2)).with_units([4, 7])
            UnitActivation(layer='features.3', unit=[4, 7], position=(1, 2))
        """
        units = list(units) if isinstance(units, Sequence) and not isinstance(units, str) else units
        return type(self)(**{**self.init_args, self.units_argument: units})

    @property
    def num_rows(self) -> int | None:
        units = self.units
        return len(units) if len(units) > 1 else None

    def row_keys(self, batch_size: int) -> list[int]:
        return _as_row_targets(self.units, batch_size, self.units_argument, type(self).__name__).tolist()

    def row_names(self, batch_size: int) -> list[str]:
        return [f"{self.layer or 'output'}-{unit}" for unit in self.row_keys(batch_size)]

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The units as a ``(B,)`` long tensor, checked against the layer's real size."""
        act = activations[self.layer]
        self.check_units(act)
        return _as_row_targets(self.units, act.shape[0], self.units_argument, type(self).__name__).to(act.device)

    def check_units(self, activation: Tensor) -> None:
        """Raise if a unit is outside ``[0, activation.shape[1])``."""
        what = self.units_argument
        if activation.ndim < 2:
            raise ValueError(f"layer {self.layer!r} output has shape {tuple(activation.shape)}; "
                             f"{type(self).__name__} needs (B, C, ...)")
        size = activation.shape[1]
        bad = [u for u in self.units if not 0 <= u < size]
        if bad:
            raise ValueError(f"{what} {bad[0]} is out of range for layer {self.layer!r}, which has {size} "
                             f"{what}s: valid {what}s are 0..{size - 1}")

    @staticmethod
    def select(activation: Tensor, units: Tensor) -> Tensor:
        """Row ``i``'s slice ``activation[i, units[i]]``, shape ``(B, *activation.shape[2:])``.

        Example:
            >>> act = torch.arange(6.0).view(2, 3)
            >>> UnitsObjective.select(act, torch.tensor([2, 0]))
            tensor([2., 3.])
        """
        rows = torch.arange(activation.shape[0], device=activation.device)
        return activation[rows, units.to(activation.device)]
