"""Dataset-scale attack metrics as torchmetrics ``Metric`` s: accumulated batch by batch, synced across
processes by torchmetrics, one value per ε (``compute`` returns ``(E,)``, or a scalar for one ε, as
torchmetrics squeezes one-element results)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["AttackSuccessRate", "PerturbationNorms", "RobustAccuracy", "SphereLabelChange", "robust_accuracy"]


def robust_accuracy(predictions: Tensor, labels: Tensor) -> Tensor:
    """The fraction of samples still classified as their label, per ε: ``(E, B)`` or ``(B,)`` predictions.

    Example:
        >>> robust_accuracy(torch.tensor([[0, 1, 2], [0, 0, 0]]), torch.tensor([0, 1, 1]))
        tensor([0.6667, 0.3333])
    """
    return (predictions == labels.to(predictions.device)).float().mean(-1)


def _num(epsilons: int | Sequence[float]) -> int:
    count = epsilons if isinstance(epsilons, int) else len(epsilons)
    if count < 1:
        raise ValueError(f"need at least one epsilon, got {epsilons!r}")
    return count


def _as_rows(values: Tensor, count: int, name: str) -> Tensor:
    """``(E, B)`` from ``(E, B)`` or, for one ε, ``(B,)``."""
    values = values.unsqueeze(0) if values.ndim == 1 else values
    if values.ndim != 2 or values.shape[0] != count:
        raise ValueError(f"{name} must be ({count}, B) (one row per epsilon), got {tuple(values.shape)}")
    return values


class _MeanPerEpsilon(Metric):
    """The mean of a per-sample value, one per ε: ``update(values (E, B))``."""

    full_state_update = False
    higher_is_better = None

    def __init__(self, epsilons: int | Sequence[float] = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_epsilons = _num(epsilons)
        self.add_state("total", torch.zeros(self.num_epsilons, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(self.num_epsilons, dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, values: Tensor) -> None:
        values = _as_rows(values, self.num_epsilons, "values").double()
        known = ~values.isnan()
        self.total += torch.where(known, values, torch.zeros_like(values)).sum(1)
        self.count += known.sum(1)

    def compute(self) -> Tensor:
        """``(E,)`` means (NaN where no sample counted)."""
        return (self.total / self.count).float()


class RobustAccuracy(_MeanPerEpsilon):
    """Accuracy under attack: the fraction of samples whose adversarial image is still classified as its label.

    Args:
        epsilons: the budgets (or their number); ``update`` takes one row of predictions per ε.

    Example:
        >>> metric = RobustAccuracy(epsilons=[0.1, 0.2])
        >>> metric.update(torch.tensor([[3, 1], [0, 0]]), torch.tensor([3, 1]))
        >>> metric.update(torch.tensor([[2], [2]]), torch.tensor([2]))
        >>> metric.compute()
        tensor([1.0000, 0.3333])
    """

    higher_is_better = True

    def update(self, predictions: Tensor, labels: Tensor) -> None:
        """``predictions``: ``(E, B)`` (or ``(B,)`` for one ε); ``labels``: ``(B,)``."""
        predictions = _as_rows(predictions, self.num_epsilons, "predictions")
        self._accumulate(predictions == labels.to(predictions.device).view(1, -1))


class AttackSuccessRate(_MeanPerEpsilon):
    """The fraction of samples on which the attack succeeded, per ε (clean misclassifications count as
    successes, as in Foolbox; pass ``mask`` to count only some samples, e.g. those classified correctly).

    Example:
        >>> metric = AttackSuccessRate()
        >>> metric.update(torch.tensor([True, False, True, True]))
        >>> metric.compute()  # one ε: a scalar
        tensor(0.7500)
    """

    higher_is_better = None

    def update(self, success: Tensor, mask: Tensor | None = None) -> None:
        """``success``: ``(E, B)`` bool (or ``(B,)``); ``mask``: ``(B,)`` bool, the samples to count."""
        values = _as_rows(success, self.num_epsilons, "success").double()
        if mask is not None:
            values = torch.where(mask.to(values.device).view(1, -1), values, torch.full_like(values, float("nan")))
        self._accumulate(values)


class SphereLabelChange(_MeanPerEpsilon):
    """The random-sphere check over a data set: the mean, over attacked samples, of the fraction of random
    points at ``k·‖δ‖₂`` around the clean image whose label differs from the clean label (NaN rows, where
    the attack did not move the image, are left out).

    Example:
        >>> metric = SphereLabelChange()
        >>> metric.update(torch.tensor([0.0, 0.1, float("nan")]))
        >>> metric.compute()
        tensor(0.0500)
    """

    higher_is_better = False

    def update(self, fractions: Tensor) -> None:
        """``fractions``: ``(E, B)`` (or ``(B,)``), NaN for samples that were not checked."""
        self._accumulate(fractions)


class PerturbationNorms(Metric):
    """The size of the successful perturbations, per ε: median and mean over the samples the attack fooled.

    Every norm is kept (a ``cat`` state, gathered from all processes), so the median is exact.

    Example:
        >>> metric = PerturbationNorms()
        >>> metric.update(torch.tensor([0.1, 0.5, 0.2, 9.0]), torch.tensor([True, True, True, False]))
        >>> metric.compute()
        {'median': tensor(0.2000), 'mean': tensor(0.2667)}
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, epsilons: int | Sequence[float] = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_epsilons = _num(epsilons)
        self.add_state("norms", [], dist_reduce_fx="cat")

    def update(self, norms: Tensor, success: Tensor) -> None:
        """``norms`` and ``success``: ``(E, B)`` (or ``(B,)``); failed samples are left out."""
        norms = _as_rows(norms, self.num_epsilons, "norms").float()
        success = _as_rows(success, self.num_epsilons, "success").to(norms.device)
        self.norms.append(torch.where(success, norms, torch.full_like(norms, float("nan"))).T)  # (B, E)

    def compute(self) -> dict[str, Tensor]:
        """``{"median": (E,), "mean": (E,)}`` (NaN where no sample was fooled)."""
        norms = self.norms if isinstance(self.norms, Tensor) else (
            torch.cat(self.norms) if self.norms else torch.empty(0, self.num_epsilons))
        return {"median": norms.nanmedian(0).values if len(norms) else torch.full((self.num_epsilons,), float("nan")),
                "mean": norms.nanmean(0) if len(norms) else torch.full((self.num_epsilons,), float("nan"))}
