"""The attack interface: ``attack(images, labels) -> adversarial images``, with everything measured on the way."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from inputopt._config import Configurable, import_class
from inputopt.capture import OUTPUT, evaluate
from inputopt.engine import NonFiniteError
from inputopt.functional.init import seeded_ball_noise
from inputopt.functional.random import RowRandom
from inputopt.functional.projection import Norm, lp_norms
from inputopt.functional.sphere import sphere_check
from inputopt.loss import LossPath
from inputopt.networks import NetworkSpec, channels_last_on_cpu, frozen
from inputopt.objectives.classification import LOSSES, LabelObjective
from inputopt.params.pixel import PixelImage
from inputopt.record import RunRecord, StepCallback

__all__ = ["Attack", "AttackResult", "LOSSES", "PredictionHistory"]

# LOSSES: the adversarial losses by name (``"ce"``, ``"margin"``, ``"dlr"``, ...). A new loss is a subclass
# ``class MyLoss(LabelObjective, loss="my")``: declaring it registers it, no table to edit.

#: A loss: a name in LOSSES, or the config of a LabelObjective with its own arguments
#: (``{"class_path": "inputopt.objectives.Margin", "init_args": {"confidence": 5.0}}``).
LossSpec = str | Mapping[str, Any]


@dataclass
class AttackResult:
    """What an attack did to a batch, for one ε.

    Attributes:
        images: the adversarial images ``(B, C, H, W)`` (for a minimal-norm attack at a given ε: the
            adversarial image where its norm is ≤ ε, else the clean image).
        clean: the clean images.
        labels: the labels the attack moved away from (untargeted) or the classes it aimed at (targeted).
        targeted: whether the attack was targeted.
        eps: the budget (``None`` for a minimal-norm attack without one).
        norm: the norm of :attr:`norms` and of the budget, ``"Linf"`` or ``"L2"``.
        success: ``(B,)`` bool: the final image is adversarial (predicted class ≠ label, or = target).
        norms: ``(B,)`` size of the perturbation ``images − clean`` in :attr:`norm`.
        steps: ``(B,)`` the number of steps after which each image was first adversarial (0: the clean
            image already was), ``-1`` if it never was.
        predictions: ``(B,)`` predicted class of the final images.
        clean_predictions: ``(B,)`` predicted class of the clean images.
        history: ``(B, S + 1)`` predicted class after every step (the seed's prediction table), when
            the attack was run with ``history=True``.
        info: what the attack adds to its results (:class:`~inputopt.attacks.AutoAttack`: ``"report"``, which
            member broke each image).
    """

    images: Tensor
    clean: Tensor
    labels: Tensor
    targeted: bool
    eps: float | None
    norm: Norm
    success: Tensor
    norms: Tensor
    steps: Tensor
    predictions: Tensor
    clean_predictions: Tensor
    history: Tensor | None = field(default=None, repr=False)
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def perturbation(self) -> Tensor:
        """``images − clean``."""
        return self.images - self.clean

    @property
    def success_rate(self) -> float:
        """The fraction of images for which the attack succeeded."""
        return self.success.float().mean().item()

    def at(self, eps: float) -> AttackResult:
        """This (minimal-norm) result within the budget ``eps``: adversarial images whose perturbation is
        larger are replaced by the clean ones.

        Example:
            >>> from inputopt.attacks import FMN
            >>> from inputopt.zoo import load_digits_split
            >>> images, labels = (t[:8] for t in load_digits_split("test"))
            >>> result = FMN("digits", steps=20).run(images, labels)[0]
            >>> bool((result.at(0.0).success == (result.clean_predictions != labels)).all())
            True
        """
        clean_success = self.clean_predictions == self.labels if self.targeted else self.clean_predictions != self.labels
        within = self.success & (self.norms <= eps)
        keep = within.view(-1, *[1] * (self.images.ndim - 1))
        success = within | clean_success
        return AttackResult(
            images=torch.where(keep, self.images, self.clean), clean=self.clean, labels=self.labels,
            targeted=self.targeted, eps=float(eps), norm=self.norm, success=success,
            norms=torch.where(within, self.norms, torch.zeros_like(self.norms)),
            steps=torch.where(within, self.steps, torch.where(clean_success, torch.zeros_like(self.steps), -1)),
            predictions=torch.where(within, self.predictions, self.clean_predictions),
            clean_predictions=self.clean_predictions, history=None, info=dict(self.info))

    def robust(self, labels: Tensor | None = None) -> Tensor:
        """``(B,)`` bool: the final image is still classified as ``labels`` (default: :attr:`labels` of
        an untargeted attack). The mean is the robust accuracy."""
        if labels is None:
            if self.targeted:
                raise ValueError("a targeted attack's labels are its targets: pass the true labels")
            labels = self.labels
        return self.predictions == labels.to(self.predictions.device)


def _check_classes(classes: Tensor, num_classes: int, name: str) -> None:
    bad = classes[(classes < 0) | (classes >= num_classes)]
    if bad.numel():
        raise ValueError(f"{name} must be class indices in 0..{num_classes - 1} (the network has {num_classes} "
                         f"classes), got {bad[0].item()}")


def _check_images(images: Tensor) -> None:
    """Refuse what an attack cannot score: not a batch of images, an empty batch, non-finite pixels."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"images is an empty batch (shape {tuple(images.shape)}): give at least one image")
    bad = ~torch.isfinite(images.detach()).flatten(1).all(1)
    if bad.any():  # a NaN pixel makes every comparison false: it would count as a success
        raise ValueError(f"images must be finite, but images {bad.nonzero().flatten().tolist()} hold NaN or Inf "
                         f"pixels")


def _check_target_differs(target: Tensor, labels: Tensor) -> None:
    """Refuse a target class equal to an image's label: that image would be a "success" before any step."""
    same = target == labels
    if same.any():
        raise ValueError(f"target must differ from each image's label (a targeted attack reaches another class), "
                         f"but images {same.nonzero().flatten().tolist()} have target == label "
                         f"{labels[same].tolist()}")


def _check_finite_logits(logits: Tensor, what: str) -> Tensor:
    """Refuse non-finite network outputs: a NaN logit compares false everywhere and would count as a success."""
    bad = ~torch.isfinite(logits.detach()).flatten(1).all(1)
    if bad.any():
        raise NonFiniteError(f"the network returned non-finite outputs (NaN or Inf) for {what} "
                             f"{bad.nonzero().flatten().tolist()[:10]}: an attack cannot score them")
    return logits


def _check_loss(loss: LossSpec) -> tuple[type[LabelObjective], dict[str, Any]]:
    """The loss class and its arguments, from a name in LOSSES or a ``{"class_path", "init_args"}`` config."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)} or a LabelObjective config, got {loss!r}")
        return LOSSES[loss], {}
    if isinstance(loss, Mapping):
        cls = import_class(loss, LabelObjective)
        init_args = dict(loss.get("init_args") or {})
        bad = {"labels", "target"} & set(init_args)
        if bad:
            raise ValueError(f"a loss config's init_args must not set {sorted(bad)}: the attack gives each call's "
                             f"labels and targets")
        cls(**init_args)  # the loss's own checks (a confidence that is not a number), now
        return cls, init_args
    raise ValueError(f"loss must be one of {sorted(LOSSES)} or a LabelObjective config "
                     f"({{'class_path': ..., 'init_args': {{...}}}}), got {loss!r}")


def _check_bounds(bounds: Sequence[float] | None) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds) \
            or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) finite numbers with low < high, got {bounds!r}")
    return float(bounds[0]), float(bounds[1])


class Attack(Configurable, ABC):
    """An adversarial attack on a classifier: ``attack(images, labels) -> adversarial images``.

    Images live in pixel space (``bounds``, default ``[0, 1]``); give the network's input normalization
    as ``mean``/``std`` and the attack puts it in front of the network. Every attack runs on the shared
    loss path (:class:`~inputopt.loss.LossPath`) and projection (:meth:`~inputopt.params.ImageParam.project_`)
    through :func:`~inputopt.engine.optimize`. :meth:`run` returns an :class:`AttackResult` per ε with the
    per-sample success, perturbation norms and the step at which each sample first succeeded.

    Args:
        model: the classifier: an ``nn.Module`` (put in eval mode during the attack, restored after; on a CPU a
            CNN runs in the channels-last memory format, :func:`~inputopt.networks.channels_last_on_cpu`) or a
            network name for :func:`~inputopt.networks.build_network` (zoo, torchvision, dotted path).
        eps: the budget, or several (one result per ε, as Foolbox does).
        norm: ``"Linf"`` or ``"L2"``.
        loss: a name in :data:`~inputopt.objectives.classification.LOSSES`: ``"ce"`` (cross-entropy),
            ``"margin"`` (the CW logit margin), ``"dlr"`` (Croce and Hein's difference-of-logits ratio), or
            any :class:`~inputopt.objectives.LabelObjective` subclass declared with ``loss="name"``; or a loss with
            arguments as a config, ``{"class_path": "inputopt.objectives.Margin", "init_args": {"confidence":
            5.0}}``; ``None``: the attack's :attr:`default_loss`.
        bounds: ``(low, high)`` box of valid images (``None``: no box).
        mean: per-channel mean of the input normalization in front of the network.
        std: per-channel standard deviation of the normalization.
        weights: torchvision weights name, for a named network.
        state_dict: local state_dict file, for a named network.
        seed: random starts of sample ``i`` depend only on ``(seed, keys[i])`` (its index by default,
            its data-set index in :class:`~inputopt.runners.attack.AttackEvaluation`).
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] | None = None, norm: Norm = "Linf",
                 loss: LossSpec | None = None, bounds: Sequence[float] | None = (0.0, 1.0), mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, weights: str | None = None, state_dict: str | None = None,
                 seed: int = 0) -> None:
        spec = NetworkSpec(model, weights, state_dict, mean, std)
        self.network = spec.build(seed=None)  # a module is attacked as it is
        self.network_name = spec.name  # for class names in results
        if norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
        loss = type(self).default_loss if loss is None else loss
        self.loss_class, self.loss_args = _check_loss(loss)
        epsilons = [] if eps is None else [eps] if isinstance(eps, (int, float)) else list(eps)
        for e in epsilons:
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
                raise ValueError(f"eps must be finite numbers >= 0, got {eps!r}")
        if eps is not None and not isinstance(eps, (int, float)) and not epsilons:  # [] would be unbounded
            raise ValueError(f"eps must be a number or a non-empty list of numbers >= 0, got {eps!r}")
        self.epsilons = [float(e) for e in epsilons]
        self.several = eps is not None and not isinstance(eps, (int, float))
        self.norm = norm
        self.loss = loss
        self.bounds = _check_bounds(bounds)
        self.normalize = spec.normalization()
        self.seed = seed

    #: The loss when none is given (``loss=None``).
    default_loss: str = "ce"

    #: Whether the attack looks for the smallest perturbation (one run serves every ε) rather than
    #: working within a budget.
    minimal: bool = False

    #: The number of steps of one run (the last column of the history); subclasses set it.
    steps: int = 1

    # -- what a subclass provides ---------------------------------------------------------------------
    @abstractmethod
    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        """Attack ``images`` for one ``eps`` and return the run's :class:`~inputopt.record.RunRecord`, whose
        :attr:`~inputopt.record.RunRecord.best` are the adversarial images (the final ones, or the best under
        the attack's criterion) and whose ``first_success`` says after how many steps each image was first
        adversarial. ``callbacks`` go to :func:`~inputopt.engine.optimize` (the prediction table of
        ``history=True``)."""


    # -- running ------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        parameter = next(self.network.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def objective(self, labels: Tensor | None = None, target: Tensor | None = None) -> LabelObjective:
        """This attack's loss for a call: moving away from ``labels``, or reaching ``target`` (its class and
        arguments from ``loss``)."""
        if target is not None:
            return self.loss_class(**self.loss_args, target=target.tolist())
        return self.loss_class(**self.loss_args, labels=None if labels is None else labels.tolist())

    def path(self, objective: LabelObjective) -> LossPath:
        """The loss path of this attack's network and normalization for ``objective``."""
        if self.normalize is not None:
            self.normalize.to(self.device)
        return LossPath(self.network, objective, normalize=self.normalize)

    def param(self, images: Tensor, eps: float | None, start: Tensor | None = None) -> PixelImage:
        """The pixels the attack optimizes: centred on ``images``, projected into the box and the ε-ball,
        starting at ``start`` (projected) when given, else at ``images``."""
        param = PixelImage(clamp=self.bounds, eps=eps, norm=self.norm).to(images.device).initialize_from(images)
        if start is not None:
            param.set_images_(start.to(images))
            param.project_()
        return param

    def random_start_images(self, images: Tensor, eps: float, keys: Sequence[int]) -> Tensor:
        """A random point of the ε-ball around each image (seeded by ``(seed, key)``), before projection."""
        noise = seeded_ball_noise(images.shape[1:], keys, RowRandom(self.seed).stream("pgd.start"), eps, self.norm)
        return images + noise.to(images)

    def _num_classes(self, images: Tensor) -> int:
        """The shape probe: the network's number of classes, from one image; a clear error when the network
        cannot take the images."""
        try:
            with torch.no_grad():
                logits = self.path(self.objective()).activations(images[:1], [""])[""]
        except RuntimeError as error:
            raise ValueError(f"the network cannot take images of shape (C, H, W) = {tuple(images.shape[1:])}: "
                             f"{error}") from error
        if logits.ndim != 2:
            raise ValueError(f"an attack needs a classifier's (B, num_classes) logits; the network returns shape "
                             f"{tuple(logits.shape)} for one image")
        return logits.shape[1]

    def predict(self, images: Tensor) -> Tensor:
        """The predicted class of each image (normalization included)."""
        with torch.no_grad(), frozen(self.network):
            normalize = None if self.normalize is None else self.normalize.to(images.device)
            logits = evaluate(self.network, images, [OUTPUT], normalize)[OUTPUT]
            return _check_finite_logits(logits, "images").argmax(1)

    def run(self, images: Tensor, labels: Tensor | None = None, target: Tensor | int | None = None,
            keys: Sequence[int] | None = None, start: Tensor | None = None,
            history: bool = False, callbacks: Sequence[StepCallback] = ()) -> list[AttackResult]:
        """Attack a batch; one :class:`AttackResult` per ε (in the order given).

        Args:
            images: ``(B, C, H, W)`` in pixel space.
            labels: ``(B,)`` true labels (``None``: the network's predictions on ``images``).
            target: classes to reach (an int or ``(B,)``): a targeted attack. A ``(B,)`` target must differ
                from each image's label; with one int, the images already of that class are successes at step 0.
            keys: one integer per image that seeds its random start (default: ``0..B-1``).
            start: starting adversarial images instead of the (random) start, projected first.
            history: record the predicted class after every step (:attr:`AttackResult.history`).
            callbacks: :class:`~inputopt.record.StepCallback` objects for the attack's steps (a progress bar,
                :class:`~inputopt.record.StepProgress`; a stop flag that clears ``record.active``).
        """
        return self._run(images, labels, target, keys, start, history, measure=True, callbacks=callbacks)

    def _run(self, images: Tensor, labels: Tensor | None, target: Tensor | int | None, keys: Sequence[int] | None,
             start: Tensor | None, history: bool, measure: bool,
             callbacks: Sequence[StepCallback] = ()) -> list[AttackResult] | list[Tensor]:
        """:meth:`run`; with ``measure=False``, only the adversarial images, one tensor per ε: no forward
        for the clean predictions (unless the labels default to them) nor for the final images'."""
        _check_images(images)
        images = images.detach().to(self.device, torch.float32)
        batch = images.shape[0]
        keys = list(range(batch)) if keys is None else [int(k) for k in keys]
        if len(keys) != batch:
            raise ValueError(f"keys must have one entry per image ({batch}), got {len(keys)}")
        if start is not None and start.shape != images.shape:
            raise ValueError(f"start must have the shape of images {tuple(images.shape)}, got {tuple(start.shape)}")
        if self.bounds is not None and images.numel() and not (
                self.bounds[0] <= images.min().item() and images.max().item() <= self.bounds[1]):
            raise ValueError(f"images must lie in the attack's bounds {self.bounds}, got values in "
                             f"[{images.min().item():.4g}, {images.max().item():.4g}]; scale them (e.g. uint8 / 255) "
                             f"or set bounds")
        probe = images[:1] if self.normalize is None else self.normalize.to(self.device)(images[:1])
        with frozen(self.network), channels_last_on_cpu(self.network, probe):
            num_classes = self._num_classes(images)
            clean_predictions = self.predict(images) if measure or labels is None else None
            labels = clean_predictions if labels is None else torch.as_tensor(labels).to(self.device)
            if labels.shape != (batch,) or labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"labels must have shape ({batch},) and hold int class indices, got a {labels.dtype} "
                                 f"tensor of shape {tuple(labels.shape)}")
            _check_classes(labels.long(), num_classes, "labels")
            labels = labels.long()
            if target is not None:
                per_image = torch.as_tensor(target).ndim > 0
                target = torch.as_tensor(target).to(self.device).long().expand(batch).clone()
                _check_classes(target, num_classes, "target")
                if per_image:  # one class for the whole batch is already reached by the images of that class
                    _check_target_differs(target, labels)
                objective = self.objective(target=target)
            else:
                objective = self.objective(labels=labels)
            targets = target if target is not None else labels
            path = self.path(objective)
            if not measure:
                return [self.attack(path, images, targets, eps, keys, start, ()).best.detach()
                        for eps in self.epsilons or [None]]
            if self.minimal:  # one run; each budget keeps the perturbations within it
                result = self._run_one(path, images, targets, target is not None, None, keys, start, history,
                                       clean_predictions, callbacks)
                return [result.at(eps) for eps in self.epsilons] if self.epsilons else [result]
            return [self._run_one(path, images, targets, target is not None, eps, keys, start, history,
                                  clean_predictions, callbacks) for eps in self.epsilons or [None]]

    def _run_one(self, path, images, targets, targeted, eps, keys, start, history, clean_predictions,
                 callbacks=()) -> AttackResult:
        callbacks = [*callbacks, *([PredictionHistory(path)] if history else [])]
        record = self.attack(path, images, targets, eps, keys, start, callbacks)
        adversarial = record.best.detach()
        with torch.no_grad():
            activations = path.activations(adversarial, [""])
            predictions = _check_finite_logits(activations[""], "the adversarial images").argmax(1)
            success = path.objective.is_done(activations, targets)
        # an image adversarial only after the last scored step: its first success is the run's length
        steps = torch.where((record.first_success < 0) & success, self.steps, record.first_success)
        table = None
        if history:  # a run that ended early (every image done) repeats its final predictions up to the last step
            table = torch.stack([*record.history, *[predictions] * (self.steps + 1 - len(record.history))], 1)
        return AttackResult(images=adversarial, clean=images, labels=targets, targeted=targeted, eps=eps,
                            norm=self.norm, success=success, norms=lp_norms(adversarial - images, self.norm),
                            steps=steps, predictions=predictions, clean_predictions=clean_predictions,
                            history=table, info=dict(record.info))

    def __call__(self, images: Tensor, labels: Tensor | None = None, target: Tensor | int | None = None) -> Tensor:
        """The adversarial images: ``(B, C, H, W)`` for one ε, ``(E, B, C, H, W)`` for a list of ε.

        Only the images: unlike :meth:`run`, no forward pass measures the clean or the final images (a
        minimal-norm attack with budgets measures its images to keep those within each budget)."""
        if self.minimal and self.epsilons:
            adversarial = [r.images for r in self.run(images, labels, target)]
        else:
            adversarial = self._run(images, labels, target, None, None, False, measure=False)
        return torch.stack(adversarial) if self.several else adversarial[0]

    def sphere_check(self, result: AttackResult, factor: float = 2.0, num_points: int = 1000, seed: int = 0,
                     progress: bool = False, clip: bool = False) -> Tensor:
        """The random-sphere check: for each image, the fraction of ``num_points`` random points on the
        sphere around the clean image with radius ``factor·‖δ‖₂`` whose label differs from the clean
        label (NaN where the attack did not move the image). The points lie exactly on the sphere, not
        clipped to the attack's ``bounds``; with ``clip=True`` they are clamped into ``bounds`` first."""
        if clip and self.bounds is None:
            raise ValueError("clip=True clamps the points into the attack's bounds, but this attack has bounds=None")
        fractions, _ = sphere_check(self.predict, result.clean, result.images, factor, num_points, seed,
                                    progress=progress, clip=self.bounds if clip else None)
        return fractions


class PredictionHistory(StepCallback):
    """Records the predicted class of the scored images at every step in ``record.history`` (the seed's table).

    Args:
        path: the attack's loss path (its evaluation forward classifies the images).
    """

    def __init__(self, path: LossPath) -> None:
        self.path = path

    @torch.no_grad()
    def on_after_backward(self, record: RunRecord, step: int, terms: dict[str, Tensor]) -> None:
        record.history.append(self.path.activations(record.scored, [""])[""].argmax(1))
