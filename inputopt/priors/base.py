"""The abstract prior: a per-image penalty that keeps the optimized images "realistic"."""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod

import torch
from torch import Tensor

from inputopt.term import Term

__all__ = ["Prior"]


class Prior(Term):
    """A penalty on the images, one value per image: ``forward(x) -> (B,)``, weighted by ``weight``.

    A subclass implements :meth:`forward`. The base class runs it in float32 outside any autocast
    region (priors are sums of many small squared terms, which half precision gets wrong), checks the
    ``(B,)`` contract and builds the ``repr``. The module adds ``weight · h(x)`` to each image's loss,
    where ``x`` are the images themselves (before any robustness transform).

    Args:
        weight: the prior's weight in the loss (finite). A negative weight rewards what the prior
            penalizes (e.g. sharper edges); it is allowed, with a warning, since it is more often a sign slip.

    Example:
        >>> class L2(Prior):
        ...     def forward(self, x):
        ...         return x.pow(2).flatten(1).sum(1)
        >>> L2(weight=0.5)(torch.ones(2, 3, 4, 4))
        tensor([48., 48.])
    """

    value_name = "penalty"

    #: Whether the penalty is centred on a per-row reference: ``forward(x, reference)`` (a distance to the clean
    #: image, to a photo). The loss path gives each row's reference, as it gives each row's target.
    centred: bool = False

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ValueError(f"a prior's weight must be a finite number, got {weight!r}")
        if weight < 0:
            warnings.warn(f"{type(self).__name__} has a negative weight ({weight}): the run rewards what it "
                          f"penalizes; give a weight >= 0 to penalize it", UserWarning, stacklevel=3)
        self.weight = float(weight)

    @abstractmethod
    def forward(self, x: Tensor, *reference: Tensor) -> Tensor:
        """Return the ``(B,)`` penalty of each image of ``x`` (unweighted); a :attr:`centred` prior also gets
        the rows' reference images."""

    def __call__(self, x: Tensor, *reference: Tensor) -> Tensor:
        if bool(reference) != self.centred:
            raise TypeError(f"{type(self).__name__} is {'' if self.centred else 'not '}centred on a per-row "
                            f"reference: call it with {'(images, reference)' if self.centred else '(images)'}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x if x.dtype == torch.float64 else x.float()
            penalty = super().__call__(x32, *(r if r.dtype == torch.float64 else r.float() for r in reference))
        return self.per_image(penalty, x.shape[0])
