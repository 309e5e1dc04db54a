"""The checks of Carlini et al., "On Evaluating Adversarial Robustness" (2019), run on an attack for you.

A robust accuracy is only as good as the attack behind it. These checks catch the usual ways an
evaluation overestimates robustness (gradient masking, too few steps, a badly tuned step size):

- ``unbounded``: with an unbounded budget the white-box attack must break every image;
- ``eps curve``: robust accuracy must not rise as ε grows;
- ``steps``: many more steps must not lower the robust accuracy much (else the attack had not converged);
- ``black-box``: the score-based :class:`~inputopt.attacks.Square` must not beat the white-box attack;
- ``restarts``: the worst case over several random starts must not lower it much;
- ``sphere``: random points at twice the minimal-norm (FMN) perturbation must rarely change the label,
  and FMN must find a perturbation for nearly every image.

:func:`evaluation_checks` runs them on a batch; :func:`checks_table` formats the pass/fail table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from inputopt._config import instantiate
from inputopt.attacks.base import Attack

__all__ = ["CheckResult", "Quantize", "QuantizedInput", "checks_table", "evaluation_checks"]


@dataclass
class CheckResult:
    """One check: its name, whether it passed, the numbers behind it and what they say.

    Attributes:
        name: the check.
        passed: whether the evaluation passed it.
        detail: the numbers, in words.
        values: the numbers.
    """

    name: str
    passed: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)


class QuantizedInput(nn.Module):
    """A network behind a non-differentiable input quantization: a deliberately gradient-masked model.

    The pixels are rounded to ``levels`` levels before the network; rounding has a zero gradient almost
    everywhere, so gradient attacks see no signal while the classifier is as easy to fool as before.
    Made to show that :func:`evaluation_checks` flags masking, and that :class:`~inputopt.attacks.BPDA` on its
    ``quantize`` layer removes it (``BPDA.inside(model, "quantize")``).

    Example:
        >>> from inputopt.zoo import digits_cnn
        >>> x = torch.rand(2, 1, 32, 32, requires_grad=True)
        >>> QuantizedInput(digits_cnn("a"), levels=4)(x).sum().backward()
        >>> float(x.grad.abs().sum())
        0.0
    """

    def __init__(self, network: nn.Module, levels: int = 8) -> None:
        super().__init__()
        self.quantize = Quantize(levels)
        self.network = network
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return self.network(self.quantize(x))


class Quantize(nn.Module):
    """Round ``[0, 1]`` pixels to ``levels`` levels: a zero gradient almost everywhere (:class:`QuantizedInput`'s
    first layer; :class:`~inputopt.attacks.BPDA` gives it the identity's gradient).

    Example:
        >>> Quantize(3)(torch.tensor([0.1, 0.3, 0.9]))
        tensor([0.0000, 0.5000, 1.0000])
    """

    def __init__(self, levels: int = 8) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"levels must be an int >= 2, got {levels!r}")
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


def _variant(attack: Attack, **changes: Any) -> Attack:
    """The attack rebuilt from its config with ``changes`` (only those its constructor takes)."""
    config = attack.config()
    args = dict(config["init_args"])
    args["model"] = attack.network
    args.pop("weights", None), args.pop("state_dict", None)
    args.update({k: v for k, v in changes.items() if k in args or k in ("eps", "seed")})
    rebuilt = instantiate({"class_path": config["class_path"], "init_args": args})
    rebuilt.normalize = attack.normalize
    return rebuilt


def _accuracy(attack: Attack, images: Tensor, labels: Tensor, keys: Sequence[int]) -> tuple[float, Tensor]:
    result = attack.run(images, labels, keys=keys)[0]
    robust = result.predictions == labels.to(result.predictions.device)
    return robust.float().mean().item(), robust


def evaluation_checks(attack: Attack, images: Tensor, labels: Tensor, eps_factors: Sequence[float] = (0.25, 0.5, 1, 2, 4),
                      more_steps: int = 4, restarts: int = 4, queries: int = 1000, minimal_steps: int = 100,
                      sphere_points: int = 200, tolerance: float = 0.02, sphere_threshold: float = 0.05,
                      keys: Sequence[int] | None = None) -> list[CheckResult]:
    """Run the checks of Carlini et al. (2019) on ``attack`` (a budgeted white-box attack) over a batch.

    Args:
        attack: the evaluated attack, with one ε (its first is used).
        images: ``(B, C, H, W)`` in the attack's pixel space.
        labels: ``(B,)`` true labels.
        eps_factors: multiples of ε for the accuracy curve.
        more_steps: the ``steps`` check runs ``more_steps×`` the attack's steps.
        restarts: random starts (seeds) of the ``restarts`` check.
        queries: Square's query budget in the ``black-box`` check.
        minimal_steps: FMN's steps in the ``sphere`` check.
        sphere_points: random points per image in the ``sphere`` check.
        tolerance: how much (a fraction of the images) an accuracy may move and still pass.
        sphere_threshold: the largest mean fraction of sphere points that may change the label.
        keys: per-image keys for the seeds (default ``0..B-1``).

    Returns:
        One :class:`CheckResult` per check, in the order of the module docstring.

    Example:
        >>> from inputopt.attacks import PGD
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> results = evaluation_checks(PGD("digits", eps=0.05, alpha=0.01, steps=5), images, labels,
        ...                             eps_factors=(0.5, 1), restarts=2, queries=20, minimal_steps=10,
        ...                             sphere_points=10)
        >>> [r.name for r in results]
        ['unbounded', 'eps curve', 'steps', 'black-box', 'restarts', 'sphere']
    """
    from inputopt.attacks.minimal import FMN
    from inputopt.attacks.square import Square

    if not attack.epsilons:
        raise ValueError("the checks need a budgeted attack (one with eps)")
    tolerance = tolerance + 1e-6  # accuracies are fractions of a batch: a move of exactly `tolerance` passes
    eps = attack.epsilons[0]
    keys = list(range(len(images))) if keys is None else list(keys)
    labels = torch.as_tensor(labels)
    base = _variant(attack, eps=eps)
    accuracy, robust = _accuracy(base, images, labels, keys)
    clean = (base.predict(images).cpu() == labels.cpu())
    results = []

    # 1. unbounded: the whole box (L∞) or its diagonal (L2)
    low, high = base.bounds if base.bounds is not None else (0.0, 1.0)
    big = (high - low) * (1.0 if base.norm == "Linf" else math.sqrt(images[0].numel()))
    unbounded, _ = _accuracy(_variant(base, eps=big), images, labels, keys)
    results.append(CheckResult("unbounded", unbounded <= tolerance,
                               f"robust accuracy {unbounded:.1%} at eps={big:.3g} (should be 0)",
                               {"eps": big, "robust_accuracy": unbounded}))

    # 2. the accuracy against eps
    factors = sorted(eps_factors)
    curve = [_accuracy(_variant(base, eps=eps * f), images, labels, keys)[0] for f in factors]
    rises = [(eps * factors[i + 1], curve[i + 1] - curve[i]) for i in range(len(curve) - 1) if curve[i + 1] > curve[i] + tolerance]
    results.append(CheckResult("eps curve", not rises,
                               "robust accuracy " + ", ".join(f"{a:.1%}@{eps * f:.3g}" for f, a in zip(factors, curve))
                               + (" (rises)" if rises else " (non-increasing)"),
                               {"eps": [eps * f for f in factors], "robust_accuracy": curve}))

    # 3. more steps
    steps = getattr(base, "steps", 1)
    if "steps" in base.init_args:
        longer, _ = _accuracy(_variant(base, steps=steps * more_steps), images, labels, keys)
        results.append(CheckResult("steps", accuracy - longer <= tolerance,
                                   f"robust accuracy {accuracy:.1%} after {steps} steps, {longer:.1%} after "
                                   f"{steps * more_steps}", {"steps": [steps, steps * more_steps],
                                                             "robust_accuracy": [accuracy, longer]}))
    else:
        results.append(CheckResult("steps", True, "the attack has no steps to vary", {}))

    # 4. black-box against white-box
    square = Square(base.network, eps=eps, norm=base.norm, queries=queries, bounds=base.bounds, seed=base.seed)
    square.normalize = base.normalize
    square_accuracy, square_robust = _accuracy(square, images, labels, keys)
    only_square = (robust.cpu() & ~square_robust.cpu()).float().mean().item()
    results.append(CheckResult("black-box", only_square <= tolerance and square_accuracy >= accuracy - tolerance,
                               f"Square ({queries} queries) {square_accuracy:.1%} vs white-box {accuracy:.1%}; "
                               f"{only_square:.1%} of the images broken by Square only",
                               {"square": square_accuracy, "white_box": accuracy, "square_only": only_square}))

    # 5. restarts: the worst case over several seeds
    worst = robust.cpu().clone()
    for seed in range(1, restarts):
        worst &= _accuracy(_variant(base, seed=base.seed + seed), images, labels, keys)[1].cpu()
    worst_accuracy = worst.float().mean().item()
    results.append(CheckResult("restarts", accuracy - worst_accuracy <= tolerance,
                               f"robust accuracy {accuracy:.1%} with one start, {worst_accuracy:.1%} worst case over "
                               f"{restarts}", {"restarts": restarts, "robust_accuracy": [accuracy, worst_accuracy]}))

    # 6. the sphere check of the minimal-norm attack
    fmn = FMN(base.network, norm="L2", steps=minimal_steps, bounds=base.bounds, seed=base.seed)
    fmn.normalize = base.normalize
    minimal = fmn.run(images, labels, keys=keys)[0]
    found = (minimal.success.cpu() & clean)
    found_rate = found.sum().item() / max(clean.sum().item(), 1)
    if found.any():
        fractions = fmn.sphere_check(minimal, factor=2.0, num_points=sphere_points).cpu()
        change = fractions[found].nanmean().item()
    else:
        change = float("nan")
    passed = found_rate >= 1 - tolerance and change <= sphere_threshold
    results.append(CheckResult("sphere", passed,
                               f"FMN found a perturbation for {found_rate:.1%} of the correct images; random points at "
                               f"2‖δ‖₂ change the label {change:.2%} of the time",
                               {"found": found_rate, "label_change": change,
                                "median_norm": minimal.norms.cpu()[found].median().item() if found.any() else None}))
    return results


def checks_table(results: Sequence[CheckResult]) -> str:
    """The checks as a Markdown table: check, pass/fail, numbers.

    Example:
        >>> print(checks_table([CheckResult("unbounded", True, "robust accuracy 0.0%")]))
        | check | result | numbers |
        |---|---|---|
        | unbounded | pass | robust accuracy 0.0% |
    """
    rows = ["| check | result | numbers |", "|---|---|---|"]
    rows += [f"| {r.name} | {'pass' if r.passed else '**FAIL**'} | {r.detail} |" for r in results]
    return "\n".join(rows)
