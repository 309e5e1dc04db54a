"""The fooling rate of one input shared by a whole data set, as a torchmetrics ``Metric``."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from inputopt.functional.fooling import fooled

__all__ = ["FoolingRate"]


class FoolingRate(Metric):
    """The fraction of samples a universal perturbation or a patch fools, accumulated over batches and synced
    across processes (functional twin: :func:`~inputopt.functional.fooling_rate`).

    Untargeted, ``update(predictions, clean_predictions)``: a sample is fooled when its prediction differs
    from its prediction on the clean image (Moosavi-Dezfooli et al. 2017). Targeted,
    ``update(predictions, targets)``: when it equals its target class. ``mask`` leaves samples out (e.g.
    those the network already gives the target class when clean).

    Args:
        targeted: count hits of the target instead of changes of the prediction.

    Example:
        >>> metric = FoolingRate()
        >>> metric.update(torch.tensor([1, 2]), torch.tensor([1, 0]))
        >>> metric.update(torch.tensor([5, 5]), torch.tensor([4, 3]))
        >>> metric.compute()
        tensor(0.7500)
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, targeted: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.targeted = bool(targeted)
        self.add_state("fooled", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Tensor, reference: Tensor, mask: Tensor | None = None) -> None:
        hit = fooled(predictions, reference, self.targeted)
        if mask is not None:
            hit = hit[mask.to(hit.device).bool()]
        # out of place: the states may have been reset under inference mode (Trainer.validate) and be updated
        # outside it (the validation of a fit)
        self.fooled = self.fooled + hit.sum()
        self.total = self.total + hit.numel()

    def compute(self) -> Tensor:
        """The fraction of the counted samples that were fooled (NaN when none counted)."""
        return (self.fooled / self.total).float()
