"""Objectives on the class scores: adversarial examples."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.objectives.base import InputObjective, _as_row_targets

__all__ = ["DLR", "LOSSES", "LabelObjective", "Margin", "NegativeCrossEntropy", "TargetedDLR"]

#: The adversarial losses by name, for ``Attack(loss=...)``: every :class:`LabelObjective` subclass declared
#: with a ``loss`` name (``class MyLoss(LabelObjective, loss="my")``) registers itself here.
LOSSES: dict[str, type[LabelObjective]] = {}


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

    #: The name this objective is registered under in :data:`LOSSES` (``None``: not registered).
    loss_name: ClassVar[str | None] = None

    def __init_subclass__(cls, loss: str | None = None, **kwargs: Any) -> None:
        """Register the subclass in :data:`LOSSES` as ``loss`` (``class MyLoss(LabelObjective, loss="my")``)."""
        super().__init_subclass__(**kwargs)
        if loss is None:
            return
        if not isinstance(loss, str) or not loss:
            raise ValueError(f"a loss name must be a non-empty string, got {loss!r}")
        known = LOSSES.get(loss)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"the loss name {loss!r} is taken by {known.__module__}.{known.__qualname__}; "
                             f"choose another for {cls.__module__}.{cls.__qualname__}")
        cls.loss_name = loss
        LOSSES[loss] = cls

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

    def forward(self, activations: dict[str, Tensor], y: Tensor) -> Tensor:
        logits = activations[self.layer]
        logits = logits if logits.dtype == torch.float64 else logits.float()
        score = self.score(logits, y.to(logits.device))
        return -score if self.targeted else score

    def is_done(self, activations: dict[str, Tensor], targets: Tensor | None = None) -> Tensor:
        logits = activations[self.layer]
        y = (self.default_targets(activations) if targets is None else targets).to(logits.device)
        predicted = logits.argmax(1)
        return predicted == y if self.targeted else predicted != y


class NegativeCrossEntropy(LabelObjective, loss="ce"):
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


class Margin(LabelObjective, loss="margin"):
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

    def forward(self, activations: dict[str, Tensor], y: Tensor) -> Tensor:
        margin = super().forward(activations, y)
        return margin if self.confidence is None else margin.clamp(max=self.confidence)


def _sorted_logits(logits: Tensor, needed: int, name: str) -> Tensor:
    if logits.shape[1] < needed:
        raise ValueError(f"{name} needs a network with at least {needed} classes, got {logits.shape[1]}")
    return logits.sort(dim=1).values


class DLR(LabelObjective, loss="dlr"):
    """The difference-of-logits ratio of Croce and Hein (2020), the loss of APGD-DLR: a margin made
    invariant to shifting and scaling the logits.

    Untargeted, the score is ``(max_{j≠y} z_j − z_y) / (z_π1 − z_π3)``, with ``z_π1 ≥ z_π2 ≥ …`` the
    sorted logits: positive once the image is misclassified. Targeted, it is
    ``(z_t − max_{j≠t} z_j) / (z_π1 − (z_π3 + z_π4)/2)``, which equals the paper's targeted DLR
    ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)`` while the image is still classified as ``y`` (see
    :class:`TargetedDLR` for the exact form, which needs both classes).

    Args:
        labels: the labels to move away from (int or one per image); ``None`` uses the prediction on
            the starting images.
        target: the class to reach (int or one per image); ``None`` for an untargeted attack.
        layer: the layer holding the logits; ``None`` is the network's output.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 2.0, 0.0, -1.0]])
        >>> DLR()({"": logits}, torch.tensor([0]))  # (2 - 4) / (4 - 0)
        tensor([-0.5000])
        >>> DLR()({"": 10 * logits + 3}, torch.tensor([0]))  # the same for scaled, shifted logits
        tensor([-0.5000])
    """

    def score(self, logits: Tensor, y: Tensor) -> Tensor:
        if self.targeted:
            ranked = _sorted_logits(logits, 4, "the targeted DLR loss")
            scale = ranked[:, -1] - 0.5 * (ranked[:, -3] + ranked[:, -4])
        else:
            ranked = _sorted_logits(logits, 3, "the DLR loss")
            scale = ranked[:, -1] - ranked[:, -3]
        own = logits.gather(1, y.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, y.view(-1, 1), float("-inf")).amax(1)
        return (other - own) / (scale + 1e-12)


class TargetedDLR(InputObjective):
    """The targeted DLR loss of APGD-T (Croce and Hein 2020): pull each image from its label ``y`` towards
    a target class ``t``; a row is done once the image is misclassified (into any class).

    The score is ``(z_t − z_y) / (z_π1 − (z_π3 + z_π4)/2)``. Its rows' targets are ``(B, 2)``: the label
    and the target class of each image.

    Args:
        labels: the true labels (int or one per image).
        target: the target classes (int or one per image).
        layer: the layer holding the logits; ``None`` is the network's output.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[4.0, 2.0, 0.0, -2.0]])
        >>> TargetedDLR(labels=0, target=1)({"": logits})  # (2 - 4) / (4 - (0 - 2) / 2)
        tensor([-0.4000])
    """

    def __init__(self, labels: int | Sequence[int], target: int | Sequence[int], layer: str | None = None) -> None:
        super().__init__(layer)
        self.labels = labels
        self.target = target
        self._labels = _classes(labels, "labels")
        self._target = _classes(target, "target")
        if len(self._labels) > 1 and len(self._target) > 1 and len(self._labels) != len(self._target):
            raise ValueError(f"labels and target must have as many entries (or one), got {len(self._labels)} "
                             f"and {len(self._target)}")

    @property
    def num_rows(self) -> int | None:
        rows = max(len(self._labels), len(self._target))
        return rows if rows > 1 else None

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        """``(B, 2)``: each row's label and target class."""
        logits = activations[self.layer]
        if logits.ndim != 2:
            raise ValueError(f"the objective needs (B, num_classes) logits; layer {self.layer!r} "
                             f"gives {tuple(logits.shape)}")
        bad = [c for c in self._labels + self._target if not 0 <= c < logits.shape[1]]
        if bad:
            raise ValueError(f"class {bad[0]} is out of range: the network has {logits.shape[1]} classes, "
                             f"valid classes are 0..{logits.shape[1] - 1}")
        owner = type(self).__name__
        rows = [_as_row_targets(values, logits.shape[0], what, owner)
                for values, what in ((self._labels, "label"), (self._target, "target"))]
        return torch.stack(rows, 1).to(logits.device)

    def forward(self, activations: dict[str, Tensor], targets: Tensor) -> Tensor:
        logits = activations[self.layer]
        logits = logits if logits.dtype == torch.float64 else logits.float()
        targets = targets.to(logits.device)
        ranked = _sorted_logits(logits, 4, "the targeted DLR loss")
        own, aim = logits.gather(1, targets[:, :1]).squeeze(1), logits.gather(1, targets[:, 1:]).squeeze(1)
        return (aim - own) / (ranked[:, -1] - 0.5 * (ranked[:, -3] + ranked[:, -4]) + 1e-12)

    def is_done(self, activations: dict[str, Tensor], targets: Tensor | None = None) -> Tensor:
        logits = activations[self.layer]
        targets = self.default_targets(activations) if targets is None else targets
        return logits.argmax(1) != targets[:, 0].to(logits.device)
