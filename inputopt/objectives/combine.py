"""Weighted sums of objectives: what ``a + b``, ``a - 0.5 * b``, ``-a`` and ``sum([...])`` build."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from inputopt._config import build
from inputopt.objectives.base import InputObjective

__all__ = ["Sum"]


class Sum(InputObjective):
    r"""A weighted sum of objectives: :math:`f(x) = \sum_k w_k f_k(x)`, one score per image.

    It reads the union of its terms' layers (the forward still stops after the deepest), and its targets
    are a tuple with each term's own. Its rows are named after the terms they combine. ``a + b``,
    ``a - b``, ``c * a``, ``-a`` and ``sum([a, b])`` build one, flattening nested sums.

    Args:
        terms: the objectives (or their ``{"class_path", "init_args"}`` configs).
        weights: one weight per term; ``None``: all 1.

    Example:
        >>> import torch
        >>> from inputopt.objectives import UnitActivation
        >>> a, b = UnitActivation(None, unit=1), UnitActivation(None, unit=2)
        >>> objective = a - 0.5 * b
        >>> objective.weights
        [1.0, -0.5]
        >>> objective({"": torch.tensor([[0.0, 4.0, 2.0]])})
        tensor([3.])

        In a YAML config::

            objective:
              class_path: Sum
              init_args:
                terms:
                  - {class_path: UnitActivation, init_args: {layer: null, unit: 1}}
                  - {class_path: UnitActivation, init_args: {layer: null, unit: 2}}
                weights: [1.0, -0.5]
    """

    def __init__(self, terms: Sequence[InputObjective], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        built = [build(t, InputObjective) for t in terms]
        if not built or not all(isinstance(t, InputObjective) for t in built):
            raise ValueError(f"Sum needs a non-empty list of objectives, got {terms!r}")
        weights = [1.0] * len(built) if weights is None else [float(w) for w in weights]
        if len(weights) != len(built):
            raise ValueError(f"Sum has {len(built)} terms but {len(weights)} weights")
        self.terms = nn.ModuleList(built)
        self.weights = weights
        del self.layer  # a sum reads its terms' layers

    @classmethod
    def of(cls, terms: Sequence[InputObjective], weights: Sequence[float]) -> Sum:
        """A flat sum: terms that are sums themselves contribute their own terms, weights multiplied."""
        flat_terms: list[InputObjective] = []
        flat_weights: list[float] = []
        for term, weight in zip(terms, weights):
            if isinstance(term, Sum):
                flat_terms += list(term.terms)
                flat_weights += [weight * w for w in term.weights]
            else:
                flat_terms.append(term)
                flat_weights.append(weight)
        return cls(flat_terms, flat_weights)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for term in self.terms for name in term.layers))

    @property
    def resolved(self) -> bool:
        return all(term.resolved for term in self.terms)

    def resolve(self, activations: dict[str, Tensor]) -> None:
        for term in self.terms:
            term.resolve(activations)

    @property
    def num_rows(self) -> int | None:
        counts = {term.num_rows for term in self.terms} - {None}
        if len(counts) > 1:
            raise ValueError(f"the terms of this Sum define different numbers of images: {sorted(counts)}; give "
                             f"every term one target per image, or a single one")
        return counts.pop() if counts else None

    def row_keys(self, batch_size: int) -> list[int] | None:
        return next((keys for term in self.terms if (keys := term.row_keys(batch_size)) is not None), None)

    def row_names(self, batch_size: int) -> list[str]:
        if all(term.row_keys(batch_size) is None for term in self.terms):
            return super().row_names(batch_size)
        per_term = [term.row_names(batch_size) for term in self.terms]
        return ["+".join(names) for names in zip(*per_term)]

    @property
    def couples_rows(self) -> bool:
        return any(term.couples_rows for term in self.terms)

    def row_groups(self, batch_size: int) -> list[int] | None:
        """Rows coupled by any term share a group (the connected components of the terms' groups)."""
        if not self.couples_rows:
            return None
        parent = list(range(batch_size))

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for term in self.terms:
            groups = term.row_groups(batch_size)
            first: dict[int, int] = {}
            for row, group in enumerate(groups or []):
                if group in first:
                    parent[root(row)] = root(first[group])
                else:
                    first[group] = row
        return [root(row) for row in range(batch_size)]

    def default_targets(self, activations: dict[str, Tensor]) -> tuple:
        return tuple(term.default_targets(activations) for term in self.terms)

    def forward(self, activations: dict[str, Tensor], targets: tuple) -> Tensor:
        if not isinstance(targets, tuple) or len(targets) != len(self.terms):
            raise ValueError(f"a Sum of {len(self.terms)} objectives needs a tuple of {len(self.terms)} targets, one "
                             f"per term (see default_targets)")
        total = 0
        for term, weight, term_targets in zip(self.terms, self.weights, targets):
            total = total + weight * term(activations, term_targets)
        return total
