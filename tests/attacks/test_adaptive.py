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


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of an attack's loss (the loss path's, with the untargeted cross-entropy) at ``x``."""
    from inputopt.loss import LossPath
    from inputopt.objectives import NegativeCrossEntropy

    x = x.clone().requires_grad_(True)
    LossPath(model, NegativeCrossEntropy(labels=y.tolist())).terms(x, y)["loss"].sum().backward()
    return x.grad


def test_eot_gradient_is_the_mean_of_the_draws_gradients(net, held_out):
    """An attack's gradient through EOT is the mean over the n draws of the gradient of its loss (computed here by
    hand, draw by draw, with EOT's documented seeding), not the gradient of the loss of the mean logits."""
    x, y = (t[:3] for t in held_out)
    randomized = RandomResizePad(net)
    eot = EOT(randomized, n=4, seed=3)
    grad = _loss_gradient(eot, x, y)
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        with torch.random.fork_rng():
            torch.manual_seed(eot.row_seeds(x[i:i + 1])[0])  # draw k of image i: row k of one forward of 4 copies
            outputs = randomized(xi.repeat(4, 1, 1, 1))
        draws = [torch.autograd.grad(-nn.functional.cross_entropy(outputs[k:k + 1], y[i:i + 1]), xi,
                                     retain_graph=True)[0] for k in range(4)]
        by_hand = torch.stack(draws).mean(0)
        assert torch.allclose(grad[i:i + 1], by_hand, atol=1e-7, rtol=1e-5)
        of_the_mean = torch.autograd.grad(-nn.functional.cross_entropy(outputs.mean(0, keepdim=True), y[i:i + 1]),
                                          xi)[0]
        assert not torch.allclose(by_hand, of_the_mean, atol=1e-6)


def test_eot_gradient_of_an_image_does_not_depend_on_its_batch(net, held_out):
    x, y = (t[:4] for t in held_out)
    eot = EOT(RandomResizePad(net), n=3)
    whole = _loss_gradient(eot, x, y)
    alone = _loss_gradient(eot, x[2:3], y[2:3])
    shuffled = _loss_gradient(eot, x[[3, 2, 0]], y[[3, 2, 0]])
    assert torch.allclose(whole[2:3], alone, atol=1e-8) and torch.allclose(whole[2:3], shuffled[1:2], atol=1e-8)
    assert not torch.allclose(whole[2:3], _loss_gradient(EOT(eot.model, n=3, seed=1), x[2:3], y[2:3]))


def test_eot_refuses_an_objective_on_a_hidden_layer_and_autoattack_rand_runs_on_it(net):
    from inputopt.attacks import AutoAttack
    from inputopt.loss import LossPath
    from inputopt.objectives import ChannelSum

    eot = EOT(RandomResizePad(net), n=2)
    with pytest.raises(ValueError, match="output only"):
        LossPath(eot, ChannelSum("model.network.features.0", channel=0)).terms(torch.rand(1, 1, 32, 32), None)
    member = AutoAttack(net, eps=0.05, version="rand").member("apgd-ce", 0.05)
    assert isinstance(member.network, EOT) and member.network.n == 20
