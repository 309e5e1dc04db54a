"""BPDA and EOT: the remedies for a gradient-masked and a randomized model, composed with the usual attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inputopt.attacks import BPDA, EOT, FMN, PGD, QuantizedInput, RandomResizePad, evaluation_checks

SMALL = dict(eps_factors=(0.5, 1, 4), restarts=2, queries=300, minimal_steps=30, sphere_points=20)


def robust(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def test_bpda_breaks_the_quantized_model_and_the_checks_then_pass(net, held_out):
    """PGD alone fails on the quantized model and the checks flag it; with BPDA on the rounding PGD breaks it
    about as well as PGD breaks the network without the rounding, and the checks pass."""
    x, y = (t[:16] for t in held_out)
    masked = QuantizedInput(net, levels=8)
    settings = dict(eps=0.1, alpha=0.02, steps=20)
    alone = PGD(masked, **settings)
    with_bpda = PGD(BPDA.inside(masked, "quantize"), **settings)
    unmasked = robust(net, PGD(net, **settings)(x, y), y)
    assert robust(masked, alone(x, y), y) > unmasked + 0.3
    assert robust(masked, with_bpda(x, y), y) <= unmasked + 0.1
    flagged = [r.name for r in evaluation_checks(alone, x, y, **SMALL) if not r.passed]
    assert "unbounded" in flagged and "black-box" in flagged
    failed = [r for r in evaluation_checks(with_bpda, x, y, **SMALL) if not r.passed]
    assert not failed, failed


def test_bpda_inside_leaves_the_network_untouched_and_takes_a_function(net):
    masked = QuantizedInput(net, levels=4)
    smooth = BPDA.inside(masked, "quantize", backward=lambda x: x.clamp(0, 1))
    assert type(masked.quantize).__name__ == "Quantize" and smooth.network is masked.network
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    smooth(x).sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no submodule"):
        BPDA.inside(masked, "nothing")
    with pytest.raises(ValueError, match="shape"):
        BPDA(nn.Flatten())(x)


def test_eot_beats_plain_pgd_on_a_randomized_model(net, held_out):
    """Random resizing and padding in front of the digits model: PGD through one random draw per step is weaker
    than PGD on the expectation over 5 draws (robust accuracy averaged over 5 random forwards)."""
    x, y = (t[:32] for t in held_out)
    randomized = RandomResizePad(net, min_scale=0.75)
    settings = dict(eps=0.1, alpha=0.025, steps=10)
    plain = PGD(randomized, **settings)(x, y)
    eot = PGD(EOT(randomized, n=5), **settings)(x, y)
    torch.manual_seed(0)
    accuracy = [sum(robust(randomized, images, y) for _ in range(5)) / 5 for images in (plain, eot)]
    assert accuracy[1] < accuracy[0] - 0.1, accuracy


def test_eot_draws_are_seeded_and_compose_with_minimal_norm_attacks(net, held_out):
    x, y = (t[:8] for t in held_out)
    randomized = RandomResizePad(net)
    first = FMN(EOT(randomized, n=2, seed=1), steps=5)(x, y)
    assert torch.equal(first, FMN(EOT(randomized, n=2, seed=1), steps=5)(x, y))
    assert not torch.equal(first, FMN(EOT(randomized, n=2, seed=2), steps=5)(x, y))
    with pytest.raises(ValueError, match="n must be"):
        EOT(randomized, n=0)
