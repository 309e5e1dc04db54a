"""Objectives on the class scores: adversarial examples."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import Forward, InputObjective

__all__ = ["NegativeCrossEntropy"]


def _labels(value: int | Sequence[int] | None, name: str) -> Tensor:
    if value is None:
        return torch.empty(0, dtype=torch.long)
    values = [value] if isinstance(value, int) else list(value)
    if not values or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int or a list of ints, got {value!r}")
    return torch.tensor(values, dtype=torch.long)


class NegativeCrossEntropy(InputObjective):
    """Adversarial objective on the logits: leave the labels ``y``, or reach a ``target`` class.

    Untargeted (no ``target``), the score is the cross-entropy ``CE(f(x), y)``: maximizing it, i.e.
    descending the negative cross-entropy, pushes each image away from its label. ``y`` defaults to
    the network's own prediction on the starting input. Targeted, the score is ``−CE(f(x), target)``:
    maximizing it pulls each image towards its target class. A row is *done* when its predicted class
    has left ``y`` (untargeted) or equals its target (targeted).

    Args:
        labels: the labels to move away from (int or one per image); ``None`` uses the prediction on
            the starting input.
        target: the class to reach (int or one per image); ``None`` for an untargeted attack.
        layer: the layer holding the logits; ``None`` is the network's output.

    Example:
        >>> objective = NegativeCrossEntropy(labels=[0, 1])
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
        >>> objective({"": logits})  # the second image is far from its label: higher score
        tensor([0.1269, 2.1269])
    """

    def __init__(self, labels: int | Sequence[int] | None = None, target: int | Sequence[int] | None = None,
                 layer: str | None = None) -> None:
        super().__init__(layer)
        if labels is not None and target is not None:
            raise ValueError("give labels (untargeted attack) or target (targeted attack), not both")
        self.labels = labels
        self.target = target
        self.register_buffer("y", _labels(target if target is not None else labels, "labels/target"))

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def num_rows(self) -> int | None:
        return self.y.numel() if self.y.numel() > 1 else None

    def prepare(self, forward: Forward, x: Tensor) -> None:
        with torch.no_grad():
            logits = forward(x)[self.layer]
        self.check({self.layer: logits})
        if self.y.numel() == 0:  # untargeted, labels from the starting input
            self.y = logits.argmax(1).to(self.y.device)

    def check(self, activations: dict[str, Tensor]) -> None:
        logits = activations[self.layer]
        if logits.ndim != 2:
            raise ValueError(f"NegativeCrossEntropy needs (B, num_classes) logits; layer {self.layer!r} "
                             f"gives {tuple(logits.shape)}")
        bad = [c for c in self.y.tolist() if not 0 <= c < logits.shape[1]]
        if bad:
            raise ValueError(f"class {bad[0]} is out of range: the network has {logits.shape[1]} classes, "
                             f"valid classes are 0..{logits.shape[1] - 1}")

    def _y(self, batch_size: int) -> Tensor:
        if self.y.numel() == 0:
            raise RuntimeError("NegativeCrossEntropy has no labels yet: call prepare() with the starting "
                               "input, or pass labels")
        if self.y.numel() not in (1, batch_size) and getattr(self, "_rows", None) is None:
            raise ValueError(f"{self.y.numel()} labels for a batch of {batch_size} images")
        return self.row_targets(self.y, batch_size, what="label")

    def forward(self, activations: dict[str, Tensor]) -> Tensor:
        logits = activations[self.layer].float()
        y = self._y(logits.shape[0]).to(logits.device)
        ce = F.cross_entropy(logits, y, reduction="none")
        return -ce if self.targeted else ce

    def is_done(self, activations: dict[str, Tensor]) -> Tensor:
        logits = activations[self.layer]
        predicted = logits.argmax(1)
        y = self._y(logits.shape[0]).to(logits.device)
        return predicted == y if self.targeted else predicted != y
