"""DeepFool and DDN (``inputopt.attacks.minimal``) beyond the attack contract: what each step does, the history,
targeted DDN, and the errors. FMN is tested in test_attacks.py; the agreement with torchattacks and Foolbox is in
test_agreement_minimal.py."""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import DDN, DDNRadius, DeepFool
from inputopt.params import PixelImage
from inputopt.record import RunRecord


@pytest.fixture(scope="module")
def data(held_out):
    images, labels = held_out
    return images[:16], labels[:16]


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_deepfool_step_with_two_candidates_is_the_linearized_step_to_the_runner_up(net, data, norm):
    """``candidates=2``: the label and the class of highest other clean logit; one step moves each image onto the
    linearized boundary between them, ``(1 + overshoot)·(|f| / ‖∇f‖_dual + 1e-4)`` along ``∇f/‖∇f‖₂`` (L2) or
    ``sign ∇f`` (L∞), clipped into the box."""
    x, y = data
    attack = DeepFool(net, norm=norm, steps=1, candidates=2, overshoot=0.1)
    record = attack.attack(attack.path(attack.objective(labels=y)), x, y, None, range(len(x)), None, [])
    images = x.clone().requires_grad_(True)
    logits = net(images)
    runner_up = logits.detach().scatter(1, y.view(-1, 1), -torch.inf).argmax(1)
    f = logits.gather(1, runner_up.view(-1, 1)) - logits.gather(1, y.view(-1, 1))
    (w,) = torch.autograd.grad(f.sum(), images)
    w = w.flatten(1)
    if norm == "L2":
        step = (f.detach().abs() / w.norm(dim=1, keepdim=True) + 1e-4) * w / w.norm(dim=1, keepdim=True)
    else:
        step = (f.detach().abs() / w.abs().sum(1, keepdim=True) + 1e-4) * w.sign()
    expected = (x + 1.1 * step.view_as(x)).clamp(0, 1)
    torch.testing.assert_close(record.images, expected, atol=1e-5, rtol=0)
    assert record.steps.tolist() == [1] * len(x)


@pytest.mark.parametrize("norm", ["L2", "Linf"])
def test_deepfool_steps_agree_with_its_history(net, data, norm):
    x, y = data
    y = y.clone()
    y[0] = (net(x[:1]).argmax(1) + 1) % 10  # misclassified from the start: done at step 0
    steps = 8
    result = DeepFool(net, norm=norm, steps=steps).run(x, y, history=True)[0]
    assert result.history.shape == (len(x), steps + 1)
    assert torch.equal(result.history[:, 0], result.clean_predictions)
    adversarial = result.history != y[:, None]
    first = torch.where(adversarial.any(1), adversarial.float().argmax(1), torch.full_like(y, -1))
    assert torch.equal(result.steps, first) and result.steps[0] == 0
    assert (result.steps[1:] >= 1).all()  # every other image needs a step


def test_deepfool_overshoot_lengthens_the_perturbation(net, data):
    x, y = data
    small = DeepFool(net, steps=30, overshoot=0.0).run(x, y)[0]
    large = DeepFool(net, steps=30, overshoot=0.5).run(x, y)[0]
    both = small.success & large.success
    assert both.sum() >= 12 and large.norms[both].median() > 1.2 * small.norms[both].median()


def test_ddn_rescales_onto_the_sphere_and_clamps():
    clean = torch.full((2, 1, 2, 2), 0.5)
    param = PixelImage().initialize_from(clean)
    callback = DDNRadius(param, clean, init_epsilon=1.0, gamma=0.1, worst=torch.tensor([0.5, 10.0]), bounds=(0.0, 1.0))
    record = RunRecord.start(clean)
    callback.on_after_backward(record, 0, {"done": torch.tensor([False, True])})
    assert torch.allclose(callback.radius, torch.tensor([0.5, 0.9]))  # (1 + γ)·1 capped at the worst, (1 − γ)·1
    with torch.no_grad():
        param.tensor.copy_(clean + torch.tensor([0.01, 0.0, 0.0, 0.0]).view(1, 1, 2, 2))  # a short step: lengthened
    callback.on_step_end(record, 0)
    delta = param() - clean
    assert torch.allclose(delta[0].flatten(), torch.tensor([0.5, 0.0, 0.0, 0.0]))
    assert torch.allclose(delta[1].flatten(), torch.tensor([0.5, 0.0, 0.0, 0.0]))  # 0.9 clamped at the box


def test_ddn_targeted_reaches_its_target(net, data):
    x, y = data
    target = (y + 3) % 10
    result = DDN(net, steps=40).run(x, y, target=target)[0]
    assert result.targeted and result.success.float().mean() >= 0.9
    assert torch.equal(result.success, result.predictions == target)


def test_ddn_more_steps_smaller_norms(net, data):
    x, y = data
    few, many = (DDN(net, steps=steps).run(x, y)[0] for steps in (10, 60))
    assert many.success.all() and many.norms.median() < few.norms.median()


def test_bad_arguments(net, data):
    x, y = data
    with pytest.raises(ValueError, match="untargeted"):
        DeepFool(net, steps=2).run(x, y, target=(y + 1) % 10)
    with pytest.raises(ValueError, match="no start"):
        DeepFool(net, steps=2).run(x, y, start=x)
    with pytest.raises(ValueError, match="candidates"):
        DeepFool(net, candidates=1)
    with pytest.raises(ValueError, match="overshoot"):
        DeepFool(net, overshoot=-0.1)
    with pytest.raises(ValueError, match="no loss"):
        DeepFool(net, loss="ce")
    with pytest.raises(ValueError, match="L2 attack"):
        DDN(net, norm="Linf")
    with pytest.raises(ValueError, match="gamma"):
        DDN(net, gamma=1.0)
    with pytest.raises(ValueError, match="init_epsilon"):
        DDN(net, init_epsilon=0)
    with pytest.raises(ValueError, match="no start"):
        DDN(net, steps=2).run(x, y, start=x)
