"""Behaviour of the attacks on their own (no reference library), on the digits model and held-out digits:
budgets and box, the fields of :class:`~inputopt.attacks.AttackResult`, seeding, early stop, targeted
attacks, FMN's budgets, the network's state after an attack, and the errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from inputopt.attacks import BIM, FGSM, FMN, PGD, GradientAscent
from inputopt.zoo import digits_cnn


@pytest.fixture(scope="module")
def data(held_out):
    images, labels = held_out
    return images[:16], labels[:16]


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "Linf" else flat.norm(dim=1)


ATTACKS = {
    "FGSM": lambda net, norm: FGSM(net, eps={"Linf": 0.1, "L2": 1.0}[norm], norm=norm),
    "BIM": lambda net, norm: BIM(net, eps={"Linf": 0.1, "L2": 1.0}[norm], alpha={"Linf": 0.03, "L2": 0.4}[norm],
                                 steps=5, norm=norm),
    "PGD": lambda net, norm: PGD(net, eps={"Linf": 0.1, "L2": 1.0}[norm], alpha={"Linf": 0.03, "L2": 0.4}[norm],
                                 steps=5, norm=norm),
    "PGD-margin": lambda net, norm: PGD(net, eps={"Linf": 0.1, "L2": 1.0}[norm],
                                        alpha={"Linf": 0.03, "L2": 0.4}[norm], steps=5, norm=norm, loss="margin"),
    "PGD-early": lambda net, norm: PGD(net, eps={"Linf": 0.1, "L2": 1.0}[norm],
                                       alpha={"Linf": 0.03, "L2": 0.4}[norm], steps=5, norm=norm, early_stop=True),
    "FMN": lambda net, norm: FMN(net, norm=norm, steps=10, eps={"Linf": 0.1, "L2": 1.0}[norm]),
}


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_budget_and_box_respected(net, data, name, norm):
    x, y = data
    attack = ATTACKS[name](net, norm)
    result = attack.run(x, y)[0]
    eps = attack.epsilons[0]
    assert result.images.shape == x.shape
    assert result.images.min() >= 0 and result.images.max() <= 1
    measured = norms(result.images - x, norm)
    assert (measured <= eps * (1 + 1e-5) + 1e-6).all(), measured.max()
    torch.testing.assert_close(result.norms, measured)
    with torch.no_grad():
        predictions = net(result.images).argmax(1)
    assert torch.equal(result.predictions, predictions)
    assert torch.equal(result.success, predictions != y)
    assert result.success.any()  # the attack did something


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_call_gives_the_images_of_run(net, data, name):
    """``attack(x, y)`` skips the measurements of :meth:`run` but not a step of the attack."""
    x, y = data
    attack = ATTACKS[name](net, "Linf")
    torch.testing.assert_close(attack(x, y), attack.run(x, y)[0].images, rtol=0, atol=0)
    target = (y + 1) % 10
    torch.testing.assert_close(attack(x, y, target=target), attack.run(x, y, target=target)[0].images, rtol=0, atol=0)
    unlabeled = GradientAscent(net, steps=3)
    torch.testing.assert_close(unlabeled(x), unlabeled.run(x)[0].images, rtol=0, atol=0)


def test_minimal_fmn_within_box_and_l2_norms(net, data):
    x, y = data
    result = FMN(net, norm="L2", steps=20).run(x, y)[0]
    assert result.eps is None
    assert result.images.min() >= 0 and result.images.max() <= 1
    torch.testing.assert_close(result.norms, (result.images - x).flatten(1).norm(dim=1))


def test_gradient_ascent_has_no_budget_and_no_box_by_default(net, data):
    x, _ = data
    result = GradientAscent(net, lr=1.0, steps=5).run(x)[0]
    assert result.eps is None
    assert (result.images < 0).any() or (result.images > 1).any()  # the seed's procedure has no box


def test_fgsm_moves_every_pixel_by_eps_where_the_gradient_is_non_zero(net, data):
    x, y = data
    eps = 0.05
    adversarial = FGSM(net, eps=eps)(x, y)
    images = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(net(images), y, reduction="sum"), images)
    expected = (x + eps * grad.sign()).clamp(0, 1)
    inside = (grad != 0) & (x + eps * grad.sign() >= 0) & (x + eps * grad.sign() <= 1)
    assert inside.float().mean() > 0.3  # enough pixels to make the claim
    delta = (adversarial - x)[inside]
    torch.testing.assert_close(delta.abs(), torch.full_like(delta, eps), rtol=0, atol=1e-6)
    assert torch.equal(delta.sign(), grad.sign()[inside])
    assert ((adversarial - x)[grad == 0] == 0).all()
    torch.testing.assert_close(adversarial, expected, rtol=0, atol=1e-6)


def test_l2_fgm_moves_each_image_by_eps(net, data):
    x, y = data
    adversarial = FGSM(net, eps=0.5, norm="L2", bounds=None)(x, y)
    torch.testing.assert_close((adversarial - x).flatten(1).norm(dim=1), torch.full((len(x),), 0.5))


def test_several_eps_one_result_each_robust_accuracy_non_increasing(net, data):
    x, y = data
    epsilons = [0.0, 0.02, 0.05, 0.1, 0.2]
    attack = PGD(net, eps=epsilons, alpha=0.02, steps=10)
    results = attack.run(x, y)
    assert [r.eps for r in results] == epsilons
    accuracy = [r.robust().float().mean().item() for r in results]
    assert accuracy[0] == (net(x).argmax(1) == y).float().mean().item()  # ε = 0: the clean accuracy
    assert all(a >= b for a, b in itertools.pairwise(accuracy)), accuracy
    assert accuracy[-1] < accuracy[0]
    for r, eps in zip(results, epsilons):
        assert (r.norms <= eps + 1e-6).all()
    stacked = attack(x, y)
    assert stacked.shape == (len(epsilons), *x.shape)
    assert torch.equal(stacked[3], results[3].images)  # seeded: the same images call after call


def test_steps_field_consistent_with_history(net, data):
    x, y = data
    y = y.clone()
    y[:3] = (net(x[:3]).argmax(1) + 1) % 10  # three images already misclassified
    steps = 6
    result = PGD(net, eps=0.1, alpha=0.02, steps=steps, random_start=False).run(x, y, history=True)[0]
    assert result.history.shape == (len(x), steps + 1)
    assert torch.equal(result.history[:, 0], result.clean_predictions)
    assert torch.equal(result.history[:, -1], result.predictions)
    adversarial = result.history != y[:, None]  # column k: the prediction after k steps
    first = torch.where(adversarial.any(1), adversarial.float().argmax(1), torch.full_like(y, -1))
    assert torch.equal(result.steps, first)
    assert (result.steps[:3] == 0).all()
    assert ((result.steps[3:] >= 1) & (result.steps[3:] <= steps) | (result.steps[3:] == -1)).all()
    assert (result.steps[result.success] >= 0).all()
    assert (result.steps == -1).any() and (result.steps >= 1).any()  # both cases occur


def test_history_of_each_step_matches_shorter_runs(net, data):
    x, y = data
    full = PGD(net, eps=0.1, alpha=0.02, steps=4, random_start=False).run(x, y, history=True)[0]
    for k in (1, 2, 3):
        shorter = PGD(net, eps=0.1, alpha=0.02, steps=k, random_start=False).run(x, y)[0]
        assert torch.equal(full.history[:, k], shorter.predictions)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_early_stop_freezes_each_image_at_its_first_success(net, data, norm):
    x, y = data
    eps, alpha = (0.1, 0.02) if norm == "Linf" else (1.5, 0.3)
    steps = 10
    free = PGD(net, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=False).run(x, y)[0]
    early = PGD(net, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=False, early_stop=True).run(x, y)[0]
    assert torch.equal(early.steps, free.steps)  # the same trajectory up to the first success
    assert (early.success == (early.steps >= 0)).all()  # frozen once adversarial: stays adversarial
    both = early.success & free.success
    assert both.sum() >= len(x) // 2
    assert (early.norms[both] <= free.norms[both] + 1e-6).all()
    assert early.norms[both].mean() < free.norms[both].mean()
    for k in early.steps[early.steps > 0].unique().tolist():  # an early-stopped image is the k-step image
        rows = early.steps == k
        k_steps = PGD(net, eps=eps, alpha=alpha, steps=k, norm=norm, random_start=False).run(x[rows], y[rows])[0]
        torch.testing.assert_close(early.images[rows], k_steps.images, rtol=0, atol=1e-6)


def test_early_stop_run_that_ends_before_its_steps_keeps_steps_and_history(net, data):
    """Every image adversarial after a few steps: the loop ends, the fields still count those steps."""
    x, y = data
    result = PGD(net, eps=0.3, alpha=0.05, steps=20, random_start=False, early_stop=True).run(x, y, history=True)[0]
    assert result.success.all()
    assert result.steps.max() < 20
    assert result.history.shape == (len(x), 21)
    adversarial = result.history != y[:, None]
    assert torch.equal(result.steps, adversarial.float().argmax(1))
    assert torch.equal(result.history[:, -1], result.predictions)


def test_targeted_attack_reaches_its_target(net, data):
    x, y = data
    target = (y + 3) % 10
    result = PGD(net, eps=0.3, alpha=0.03, steps=20, random_start=False).run(x, y, target=target)[0]
    assert result.targeted and torch.equal(result.labels, target)
    assert result.success.float().mean() >= 0.9
    assert torch.equal(result.success, result.predictions == target)
    with pytest.raises(ValueError, match="true labels"):
        result.robust()
    assert result.robust(y).float().mean() <= 0.1
    one = PGD(net, eps=0.3, alpha=0.03, steps=20, random_start=False).run(x, y, target=7)[0]  # an int target
    assert torch.equal(one.labels, torch.full_like(y, 7)) and one.success.float().mean() >= 0.9


def test_gradient_ascent_is_the_seed_procedure(net, data):
    x, _ = data
    attack = GradientAscent(net)
    assert (attack.lr, attack.steps, attack.bounds, attack.loss) == (0.1, 15, None, "ce")
    result = attack.run(x[:4], history=True)[0]
    assert result.history.shape == (4, 16)
    labels = net(x[:4]).argmax(1)
    assert torch.equal(result.labels, labels)  # the network's own prediction is the label
    images = x[:4].clone()  # the seed's loop: SGD, lr 0.1, 15 steps, ascending the cross-entropy
    for _ in range(15):
        images.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(net(images), labels, reduction="sum"), images)
        images = (images + 0.1 * grad).detach()
    torch.testing.assert_close(result.images, images, rtol=1e-5, atol=1e-5)


def test_fmn_at_eps_keeps_only_perturbations_within_it(net, data):
    x, y = data
    epsilons = [0.3, 0.6, 1.0]
    attack = FMN(net, norm="L2", steps=20)
    minimal = attack.run(x, y)[0]
    budgets = FMN(net, norm="L2", steps=20, eps=epsilons).run(x, y)
    assert len(budgets) == 3
    accuracies = []
    for result, eps in zip(budgets, epsilons):
        within = minimal.success & (minimal.norms <= eps)
        assert torch.equal(result.success, within)
        assert (result.norms <= eps).all()
        assert torch.equal(result.images[within], minimal.images[within])
        assert torch.equal(result.images[~within], x[~within])  # beyond the budget: the clean image
        with torch.no_grad():
            assert torch.equal(net(result.images).argmax(1), result.predictions)
        accuracies.append(result.robust().float().mean().item())
    assert accuracies == sorted(accuracies, reverse=True) and accuracies[0] > accuracies[-1]
    assert torch.equal(minimal.at(0.6).images, budgets[1].images)


def test_fmn_linf_breaks_most_images_with_small_perturbations(net, data):
    x, y = data
    result = FMN(net, norm="Linf", steps=30).run(x, y)[0]
    assert result.success.float().mean() >= 0.9
    assert (result.norms[result.success] < 0.2).all()


def test_seeded_random_start_depends_on_key_not_batch_position(net, data):
    x, y = data
    attack = PGD(net, eps=0.1, alpha=0.02, steps=3, seed=5)
    batch = attack.run(x[:6], y[:6], keys=[10, 11, 12, 13, 14, 15])[0].images
    reordered = attack.run(x[[4, 1]], y[[4, 1]], keys=[14, 11])[0].images
    torch.testing.assert_close(reordered, batch[[4, 1]], rtol=0, atol=1e-6)
    other_seed = PGD(net, eps=0.1, alpha=0.02, steps=3, seed=6).run(x[:6], y[:6], keys=[10, 11, 12, 13, 14, 15])[0]
    assert not torch.allclose(other_seed.images, batch)
    default_keys = attack.run(x[:6], y[:6])[0].images  # keys 0..B-1
    assert not torch.allclose(default_keys, batch)


def test_random_start_images_are_in_the_ball(net, data):
    x, _ = data
    for norm, eps in (("Linf", 0.1), ("L2", 1.0)):
        attack = PGD(net, eps=eps, norm=norm)
        start = attack.random_start_images(x, eps, list(range(len(x))))
        assert (norms(start - x, norm) <= eps + 1e-6).all()
        assert (norms(start - x, norm) > 0).all()


def test_network_by_name(net, data):
    x, y = data
    by_name = PGD("digits", eps=0.1, alpha=0.02, steps=3).run(x, y)[0]
    by_module = PGD(net, eps=0.1, alpha=0.02, steps=3).run(x, y)[0]
    torch.testing.assert_close(by_name.images, by_module.images)


def test_user_network_comes_back_in_its_modes_and_flags(data):
    x, y = data
    net = digits_cnn("a")
    net.train()
    net.features[0].requires_grad_(False)
    modes = {name: m.training for name, m in net.named_modules()}
    net.classifier[0].eval()  # a mixed state
    modes["classifier.0"] = False
    flags = {name: p.requires_grad for name, p in net.named_parameters()}
    result = PGD(net, eps=0.1, alpha=0.02, steps=3).run(x, y)[0]
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert {name: p.requires_grad for name, p in net.named_parameters()} == flags
    assert all(p.grad is None for p in net.parameters())  # no weight gradient accumulated
    reference = PGD(digits_cnn("a").eval(), eps=0.1, alpha=0.02, steps=3).run(x, y)[0]
    torch.testing.assert_close(result.images, reference.images)  # attacked in eval mode (no dropout)


def test_attack_restores_the_network_after_an_error(data):
    x, y = data
    net = digits_cnn("a").train()
    with pytest.raises(ValueError):
        PGD(net, eps=0.1).run(x, y[:-1])
    assert net.training and all(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf"), True, "0.1", [0.1, -1.0]])
def test_bad_eps(net, eps):
    with pytest.raises(ValueError, match="eps"):
        PGD(net, eps=eps)


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "L1"}, "norm"),
    ({"loss": "hinge"}, "loss"),
    ({"bounds": (1.0, 0.0)}, "bounds"),
    ({"bounds": (0.0,)}, "bounds"),
    ({"bounds": (0.0, float("inf"))}, "bounds"),
    ({"alpha": 0.0}, "alpha"),
    ({"steps": 0}, "steps"),
    ({"mean": [0.5]}, "mean and std"),
])
def test_bad_arguments(net, kwargs, match):
    with pytest.raises(ValueError, match=match):
        PGD(net, **{"eps": 0.1, **kwargs})


def test_bad_fmn_arguments(net, data):
    with pytest.raises(ValueError, match="gamma"):
        FMN(net, gamma=1.5)
    with pytest.raises(ValueError, match="loss"):
        FMN(net, loss="ce")
    with pytest.raises(ValueError, match="norm"):
        FMN(net, norm="L0")
    x, y = data
    with pytest.raises(ValueError, match="start"):
        FMN(net, steps=2).run(x, y, start=x)


def test_bad_model():
    with pytest.raises(TypeError, match="nn.Module or a network name"):
        PGD(42)
    with pytest.raises(ValueError, match="weights and state_dict"):
        PGD(digits_cnn("a"), weights="DEFAULT")


def test_bad_inputs(net, data):
    x, y = data
    attack = PGD(net, eps=0.1, steps=2)
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        attack.run(x[0], y[:1])
    with pytest.raises(ValueError, match="labels must have shape"):
        attack.run(x, y[:-1])
    with pytest.raises(ValueError, match="labels must have shape"):
        attack.run(x, y[:, None])
    with pytest.raises(ValueError, match="keys"):
        attack.run(x, y, keys=[0, 1])
    with pytest.raises(ValueError, match="start"):
        attack.run(x, y, start=x[:2])


class TestCW:
    def test_binary_search_finds_smaller_perturbations(self, net, held_out):
        from inputopt.attacks import CW

        x, y = (t[:16] for t in held_out)
        once = CW(net, c=1.0, steps=30, lr=0.05).run(x, y)[0]
        searched = CW(net, c=1.0, steps=30, lr=0.05, search_steps=4).run(x, y)[0]
        assert searched.success.sum() >= once.success.sum()
        both = once.success & searched.success
        assert (searched.norms[both] <= once.norms[both] + 1e-6).all() and searched.norms[both].sum() < once.norms[both].sum()
        assert torch.equal(searched.images[~searched.success], x[~searched.success])  # a miss is the clean image

    def test_targeted_and_confidence(self, net, held_out):
        from inputopt.attacks import CW

        x, y = (t[:8] for t in held_out)
        target = (y + 1) % 10
        result = CW(net, c=10.0, steps=60, lr=0.05, kappa=1.0).run(x, y, target=target)[0]
        assert result.success.float().mean() >= 0.75
        with torch.no_grad():
            logits = net(result.images[result.success])
        own = logits.gather(1, target[result.success].view(-1, 1)).squeeze(1)
        other = logits.scatter(1, target[result.success].view(-1, 1), float("-inf")).amax(1)
        assert ((own - other) > 0).all()

    def test_exception(self, net):
        from inputopt.attacks import CW

        with pytest.raises(ValueError, match="give bounds"):
            CW(net, bounds=None)
        with pytest.raises(ValueError, match="c must be a finite number > 0"):
            CW(net, c=0)
        with pytest.raises(ValueError, match="search_steps must be an int >= 1"):
            CW(net, search_steps=0)
        with pytest.raises(ValueError, match="takes no loss"):
            CW(net, loss="ce")


def test_a_loss_with_arguments_is_a_config(net, held_out):
    """``loss`` takes a LabelObjective config with its own arguments; each call gives the labels."""
    from inputopt._config import instantiate
    from inputopt.objectives import Margin

    x, y = (t[:8] for t in held_out)
    capped = {"class_path": "inputopt.objectives.Margin", "init_args": {"confidence": 0.0}}
    attack = PGD(net, eps=0.1, alpha=0.02, steps=5, loss=capped)
    assert isinstance(attack.objective(labels=y), Margin) and attack.objective(labels=y).confidence == 0.0
    # a margin capped at 0 has no gradient once an image is adversarial: it then stays where it is
    assert torch.equal(instantiate(attack.config())(x, y), attack(x, y))
    assert not torch.equal(attack(x, y), PGD(net, eps=0.1, alpha=0.02, steps=5, loss="margin")(x, y))
    with pytest.raises(ValueError, match="must not set \\['labels'\\]"):
        PGD(net, loss={"class_path": "inputopt.objectives.Margin", "init_args": {"labels": [1]}})
    with pytest.raises(ValueError, match="confidence must be a finite number"):
        PGD(net, loss={"class_path": "inputopt.objectives.Margin", "init_args": {"confidence": "big"}})
