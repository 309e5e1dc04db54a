"""Objectives on the class scores: adversarial examples."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import InputObjective, _as_row_targets

__all__ = ["LabelObjective", "Margin", "NegativeCrossEntropy"]


def _classes(value: int | Sequence[int] | None, name: str) -> list[int] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ValueError(f"{name} must be an int or a non-empty list of ints, got {value!r}")
    return list(values)


class LabelObjective(InputObjective):
    """Base of the adversarial objectives on the logits: leave the labels ``y``, or reach a ``target`` class.

    Untargeted (no ``target``), the rows' targets are the labels ``y`` to move away from; they default to
    the network's own prediction on the starting images. Targeted, the rows' targets are the classes to
    reach. A row is *done* when its predicted class has left ``y`` (untargeted) or equals its target
    (targeted). A subclass implements :meth:`score`.

    Args:
        labels: the labels to move away from (int or one per image); ``None`` uses the prediction on
            the starting images.
        target: the class to reach (int or one per image); ``None`` for an untargeted attack.
        layer: the layer holding the logits; ``None`` is the network's output.
    """

    def __init__(self, labels: int | Sequence[int] | None = None, target: int | Sequence[int] | None = None,
                 layer: str | None = None) -> None:
        super().__init__(layer)
        if labels is not None and target is not None:
            raise ValueError("give labels (untargeted attack) or target (targeted attack), not both")
        self.labels = labels
        self.target = target
        self._classes = _classes(target, "target") if target is not None else _classes(labels, "labels")

    @property
    def targeted(self) -> bool:
        return self.target is not None

    @property
    def num_rows(self) -> int | None:
        return len(self._classes) if self._classes is not None and len(self._classes) > 1 else None

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """The labels (or target classes) as a ``(B,)`` tensor; without them, the prediction on ``activations``."""
        logits = activations[self.layer]
        if logits.ndim != 2:
            raise ValueError(f"the objective needs (B, num_classes) logits; layer {self.layer!r} "
                             f"gives {tuple(logits.shape)}")
        if self._classes is None:  # untargeted, labels from the starting images
            return logits.argmax(1)
        bad = [c for c in self._classes if not 0 <= c < logits.shape[1]]
        if bad:
            raise ValueError(f"class {bad[0]} is out of range: the network has {logits.shape[1]} classes, "
                             f"valid classes are 0..{logits.shape[1] - 1}")
        what = "target" if self.targeted else "label"
        return _as_row_targets(self._classes, logits.shape[0], what, type(self).__name__).to(logits.device)

    @abstractmethod
    def score(self, logits: Tensor, y: Tensor) -> Tensor:
        """How far each row has moved away from its label ``y`` (untargeted): ``(B,)``, to maximize."""

    def forward(self, activations: dict[str, Tensor], y: Tensor | None = None) -> Tensor:
        if y is None:
            y = self.default_targets(activations)
        logits = activations[self.layer]
        logits = logits if logits.dtype == torch.float64 else logits.float()
        score = self.score(logits, y.to(logits.device))
        return -score if self.targeted else score

    def is_done(self, activations: dict[str, Tensor], targets: Tensor | None = None) -> Tensor:
        logits = activations[self.layer]
        y = (self.default_targets(activations) if targets is None else targets).to(logits.device)
        predicted = logits.argmax(1)
        return predicted == y if self.targeted else predicted != y


class NegativeCrossEntropy(LabelObjective):
    """The cross-entropy: leave the labels ``y``, or reach a ``target`` class (see :class:`LabelObjective`).

    Untargeted (no ``target``), the score is the cross-entropy ``CE(f(x), y)``: maximizing it pushes each
    image away from its label. ``y`` defaults to the network's own prediction on the starting images.
    Targeted, the score is ``−CE(f(x), target)``: maximizing it pulls each image towards its target
    class. The labels (or target classes) are the rows' targets: ``forward(activations, y)``.

    Args:
        labels: the labels to move away from (int or one per image); ``None`` uses the prediction on
            the starting images.
        target: the class to reach (int or one per image); ``None`` for an untargeted attack.
        layer: the layer holding the logits; ``None`` is the network's output.

    Example:
        >>> import torch
        >>> objective = NegativeCrossEntropy()
        >>> logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
        >>> objective({"": logits}, torch.tensor([0, 1]))  # the second image is far from its label
        tensor([0.1269, 2.1269])
    """

    def score(self, logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, reduction="none")


class Margin(LabelObjective):
    """The logit margin of Carlini and Wagner (the "CW loss"): leave the labels ``y``, or reach a ``target``.

    Untargeted, the score is ``max_{j≠y} z_j − z_y``: positive once the image is misclassified.
    Targeted, it is ``z_t − max_{j≠t} z_j``: positive once the image is classified as ``t``. Unlike the
    cross-entropy, it does not saturate on confident images, and its sign says whether the attack
    succeeded. With ``confidence`` κ, the score stops growing at κ (``min(margin, κ)``), as in CW.

    Args:
        labels: the labels to move away from (int or one per image); ``None`` uses the prediction on
            the starting images.
        target: the class to reach (int or one per image); ``None`` for an untargeted attack.
        layer: the layer holding the logits; ``None`` is the network's output.
        confidence: cap κ on the margin (``None``: no cap).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[2.0, 0.5, 0.0], [0.0, 3.0, 1.0]])
        >>> Margin()({"": logits}, torch.tensor([0, 0]))
        tensor([-1.5000,  3.0000])
        >>> Margin(target=2)({"": logits})
        tensor([-2., -2.])
    """

    def __init__(self, labels: int | Sequence[int] | None = None, target: int | Sequence[int] | None = None,
                 layer: str | None = None, confidence: float | None = None) -> None:
        super().__init__(labels, target, layer)
        if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
                                       or not math.isfinite(confidence)):
            raise ValueError(f"confidence must be a finite number or None, got {confidence!r}")
        self.confidence = confidence

    def score(self, logits: Tensor, y: Tensor) -> Tensor:
        own = logits.gather(1, y.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
        return other - own

    def forward(self, activations: dict[str, Tensor], y: Tensor | None = None) -> Tensor:
        margin = super().forward(activations, y)
        return margin if self.confidence is None else margin.clamp(max=self.confidence)
