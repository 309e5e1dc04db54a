"""The fooling rate of a universal perturbation or a patch: pure tensor code (the twin of
:class:`~inputopt.metrics.FoolingRate`)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fooled", "fooling_rate"]


def fooled(predictions: Tensor, reference: Tensor, targeted: bool = False) -> Tensor:
    """Per sample, whether the attack worked: ``(B,)`` bool.

    Untargeted, ``reference`` holds the predictions on the clean images (or the labels) and a sample is
    fooled when its prediction differs; targeted, ``reference`` holds the target classes and a sample is
    fooled when its prediction equals its target.

    Example:
        >>> fooled(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 0])).tolist()
        [False, True, True]
    """
    if predictions.shape != reference.shape or predictions.ndim != 1:
        raise ValueError(f"predictions and reference must both be (B,), got {tuple(predictions.shape)} and "
                         f"{tuple(reference.shape)}")
    same = predictions == reference.to(predictions.device)
    return same if targeted else ~same


def fooling_rate(predictions: Tensor, reference: Tensor, targeted: bool = False, mask: Tensor | None = None) -> Tensor:
    """The fraction of samples fooled (:func:`fooled`), over the samples of ``mask`` (default: all); NaN for none.

    Example:
        >>> fooling_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 0, 4]))
        tensor(0.5000)
        >>> fooling_rate(torch.tensor([7, 7, 3]), torch.tensor([7, 7, 7]), targeted=True, mask=torch.tensor([False, True, True]))
        tensor(0.5000)
    """
    hit = fooled(predictions, reference, targeted).float()
    if mask is not None:
        hit = hit[mask.to(hit.device).bool()]
    return hit.mean() if hit.numel() else torch.tensor(float("nan"))
