"""The step engine: one optimization step of an input, written once, and what a step may refuse.

Pure tensor code (no Lightning): :class:`~inputopt.module.InputOptimization`, :func:`inputopt.loss.optimize`
(the sweeps, the attacks, the dataset runners) all step through it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["REFUSED_PRECISIONS", "NonFiniteError", "check_precision", "nonfinite_message", "restore_rows_"]

#: Precisions that would cast the input itself (and the priors' sums of squares) to half precision.
REFUSED_PRECISIONS = ("16-true", "bf16-true")


class NonFiniteError(FloatingPointError):
    """A loss, an image or a checkpoint went non-finite (NaN or Inf): the run stops instead of going on."""


def nonfinite_message(terms: dict[str, Tensor], names: Sequence[str], step: int) -> str:
    """Which terms and which rows of a loss forward are non-finite, for an error message.

    Example:
        >>> terms = {"objective": torch.tensor([1.0, float("nan")]), "TV": torch.ones(2),
        ...          "loss": torch.tensor([0.0, float("nan")])}
        >>> nonfinite_message(terms, ["a", "b"], step=3)
        'non-finite loss (NaN or Inf) at step 3: objective in rows 1 (b)'
    """
    parts = []
    for term, value in terms.items():
        bad = ~torch.isfinite(value.detach())
        if term != "loss" and bad.any():
            parts.append(f"{term} in rows " + ", ".join(f"{i} ({names[i]})" for i in bad.nonzero().flatten().tolist()))
    if not parts:  # finite terms whose weighted sum overflows
        bad = (~torch.isfinite(terms["loss"].detach())).nonzero().flatten().tolist()
        parts.append("the weighted sum of the terms in rows " + ", ".join(f"{i} ({names[i]})" for i in bad))
    return f"non-finite loss (NaN or Inf) at step {step}: " + "; ".join(parts)


@torch.no_grad()
def restore_rows_(tensors: Sequence[Tensor], before: Sequence[Tensor], rows: Tensor) -> None:
    """Put back the values of ``rows`` (a bool ``(B,)`` mask) from ``before``: how done images stay
    frozen under optimizers whose momentum moves rows with a zero gradient."""
    if rows.any():
        for tensor, old in zip(tensors, before):
            tensor[rows] = old[rows]


def check_precision(trainer) -> None:
    """Refuse the precisions that would cast the images themselves to half precision (``trainer``: anything
    with a ``precision``, such as a Lightning ``Trainer``)."""
    precision = str(getattr(trainer, "precision", ""))
    if precision in REFUSED_PRECISIONS:
        raise ValueError(
            f"precision {precision!r} would cast the input itself to half precision, so small updates "
            f"vanish and the priors' sums of squares lose accuracy; use '16-mixed' or 'bf16-mixed' "
            f"(the network runs in half precision, the images and priors stay float32)")
