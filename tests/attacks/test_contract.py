"""The attack contract, checked for every concrete ``Attack`` subclass of the package.

Subclasses are discovered by walking ``Attack.__subclasses__()`` after importing every module of
``inputopt.attacks`` (as the objective and prior contracts do). Each needs example constructor arguments
in ``EXAMPLES`` below: a new attack without one makes ``test_has_example`` fail, so it is noticed (and then
tested) the moment it exists. The examples name the network (``"digits"``), so that their config is plain
data and round-trips.
"""

from __future__ import annotations

import copy

import pytest
import torch

import inputopt.attacks
from inputopt._config import instantiate
from inputopt.attacks import APGD, APGDT, BIM, CW, FGSM, FMN, PGD, Attack, AutoAttack, GradientAscent, Square
from inputopt.functional.projection import lp_norms
from tests.conftest import concrete_subclasses

B = 6
TOL = 1e-5

#: Example constructor arguments per class; every example is a budgeted attack unless it says otherwise.
EXAMPLES: dict[type, list[dict]] = {
    FGSM: [dict(eps=0.1), dict(eps=0.5, norm="L2")],
    BIM: [dict(eps=0.1, alpha=0.03, steps=3), dict(eps=0.5, alpha=0.2, steps=3, norm="L2", loss="margin")],
    PGD: [dict(eps=0.1, alpha=0.03, steps=3), dict(eps=0.5, alpha=0.2, steps=3, norm="L2", loss="dlr")],
    FMN: [dict(steps=5), dict(steps=5, norm="Linf")],
    inputopt.attacks.DeepFool: [dict(steps=5), dict(steps=3, norm="Linf", candidates=3, eps=0.1)],
    inputopt.attacks.DDN: [dict(steps=5), dict(steps=5, eps=1.0)],
    CW: [dict(steps=5, lr=0.05), dict(steps=4, search_steps=2, kappa=0.5, abort_early="image")],
    GradientAscent: [dict(lr=0.1, steps=3)],
    APGD: [dict(eps=0.1, steps=5), dict(eps=0.5, steps=5, norm="L2", loss="dlr", restarts=2)],
    APGDT: [dict(eps=0.1, steps=4, target_classes=2)],
    Square: [dict(eps=0.1, queries=20), dict(eps=0.5, queries=20, norm="L2")],
    AutoAttack: [dict(eps=0.1, version="standard", steps=3, target_classes=2, queries=10)],
    inputopt.attacks.FAB: [dict(steps=3), dict(steps=3, norm="L2", eps=0.5, restarts=2), dict(steps=2, target_classes=2),
                           dict(steps=3, norm="L2", candidates=3, eps=1.0)],
}

#: A second budget and the normalization that every example is also run with (to check several ε and
#: that ``mean``/``std``/``bounds``/``seed`` survive the config).
EXTRA = dict(mean=[0.1], std=[0.9], seed=3, bounds=[0.0, 1.0])

CLASSES = concrete_subclasses(Attack, inputopt.attacks)
CASES = [pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}")
         for cls in CLASSES for i, kwargs in enumerate(EXAMPLES.get(cls) or [None])]


@pytest.fixture(scope="module")
def data(held_out):
    images, labels = held_out
    return images[:B], labels[:B]


def test_discovery_finds_known_attacks():
    assert {FGSM, PGD, FMN, APGD, Square, AutoAttack} <= set(CLASSES)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), (f"{cls.__module__}.{cls.__qualname__} is a new Attack: add example constructor "
                               f"arguments to EXAMPLES in {__file__}")


def test_no_stale_examples():
    assert set(EXAMPLES) <= set(CLASSES)


def _skip_without_example(kwargs):
    if kwargs is None:
        pytest.skip("no example (test_has_example fails)")


def _budget(attack: Attack) -> float | None:
    return attack.epsilons[0] if attack.epsilons else None


@pytest.mark.parametrize("cls, kwargs", CASES)
class TestAttackContract:
    def test_budget_and_box(self, cls, kwargs, data):
        _skip_without_example(kwargs)
        x, y = data
        attack = cls("digits", **kwargs)
        result = attack.run(x, y)[0]
        assert result.images.shape == x.shape and result.success.shape == (B,)
        if attack.bounds is not None:
            assert attack.bounds[0] - TOL <= result.images.min() and result.images.max() <= attack.bounds[1] + TOL
        eps = _budget(attack)
        if eps is not None:
            assert (lp_norms(result.images - x, attack.norm) <= eps * (1 + TOL) + TOL).all()
        assert torch.allclose(result.norms, lp_norms(result.images - x, attack.norm), atol=TOL)
        # success is what the final images say
        assert torch.equal(result.success, attack.predict(result.images) != y)

    def test_call_equals_run(self, cls, kwargs, data):
        _skip_without_example(kwargs)
        x, y = data
        attack = cls("digits", **kwargs)
        assert torch.equal(attack(x, y), attack.run(x, y)[0].images)

    def test_seeded_per_sample(self, cls, kwargs, data):
        """Sample i's result depends on (seed, key i), not on the batch it is in."""
        _skip_without_example(kwargs)
        x, y = data
        attack = cls("digits", **kwargs, seed=5)
        whole = attack.run(x, y)[0].images
        part = attack.run(x[2:5], y[2:5], keys=[2, 3, 4])[0].images
        assert torch.allclose(whole[2:5], part, atol=1e-5)
        assert torch.equal(cls("digits", **kwargs, seed=5)(x, y), whole)  # and reproducible

    def test_several_eps(self, cls, kwargs, data):
        """A list of ε gives one result per ε, each the result of that ε alone."""
        _skip_without_example(kwargs)
        x, y = data
        eps = _budget(cls("digits", **kwargs))
        if eps is None:
            pytest.skip("an attack without a budget")
        several = dict(kwargs, eps=[eps / 2, eps])
        results = cls("digits", **several).run(x, y)
        assert [r.eps for r in results] == [eps / 2, eps]
        for r, e in zip(results, (eps / 2, eps)):
            alone = cls("digits", **dict(kwargs, eps=e)).run(x, y)[0]
            assert torch.allclose(r.images, alone.images, atol=1e-5)
        assert cls("digits", **several)(x, y).shape == (2, *x.shape)

    def test_network_untouched(self, cls, kwargs, data):
        """Weights (the same tensors), modes and flags of the user's network are as before the attack."""
        _skip_without_example(kwargs)
        from inputopt.zoo import digits_cnn

        x, y = data
        network = digits_cnn("a").train()
        network.requires_grad_(True)
        before = copy.deepcopy(network.state_dict())
        tensors = {name: (p.data_ptr(), p.stride()) for name, p in network.named_parameters()}
        cls(network, **kwargs)(x, y)
        assert network.training and all(m.training for m in network.modules())
        # its own tensors, in their own memory format (an attack runs a CNN channels-last on a CPU)
        assert {name: (p.data_ptr(), p.stride()) for name, p in network.named_parameters()} == tensors
        assert all(p.requires_grad and p.grad is None for p in network.parameters())
        after = network.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)

    def test_config_round_trip(self, cls, kwargs, data):
        """``config()`` keeps every argument, those passed on to ``Attack`` included, and rebuilds the attack."""
        _skip_without_example(kwargs)
        x, y = data
        attack = cls("digits", **kwargs, **EXTRA)
        config = attack.config()
        assert all(config["init_args"][k] == v for k, v in EXTRA.items()), config
        rebuilt = instantiate(config)
        assert type(rebuilt) is cls and rebuilt.config() == config
        assert rebuilt.seed == 3 and rebuilt.bounds == (0.0, 1.0) and rebuilt.normalize is not None
        assert torch.equal(rebuilt(x, y), attack(x, y))

    def test_no_state_left_on_the_attack(self, cls, kwargs, data):
        """Everything a run finds is in its results (and record), none of it on the attack object: two runs of
        one attack object equal two fresh attacks', and its attributes are as before."""
        _skip_without_example(kwargs)
        x, y = data
        attack = cls("digits", **kwargs)
        before = {k: copy.copy(v) for k, v in vars(attack).items() if k not in ("network", "normalize")}
        first = attack.run(x[:3], y[:3])[0]
        attack.run(x[3:], y[3:])
        after = {k: v for k, v in vars(attack).items() if k not in ("network", "normalize")}
        assert after.keys() == before.keys()
        assert all(after[k] is before[k] or after[k] == before[k] for k in before), \
            [k for k in before if not (after[k] is before[k] or after[k] == before[k])]
        again = cls("digits", **kwargs).run(x[:3], y[:3])[0]
        assert torch.equal(first.images, again.images) and torch.equal(first.steps, again.steps)

    def test_exception_nonfinite_network(self, cls, kwargs, data):
        """A network that returns NaN is refused with NonFiniteError, never counted as a success."""
        _skip_without_example(kwargs)
        from inputopt.engine import NonFiniteError
        from inputopt.zoo import digits_cnn

        network = digits_cnn("a")

        class NaNOut(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = network

            def forward(self, images):
                return self.net(images) * float("nan")

        x, y = data
        with pytest.raises(NonFiniteError):
            cls(NaNOut(), **kwargs).run(x, y)
        with pytest.raises(NonFiniteError):  # the images alone: no clean forward, the attack's own steps refuse
            cls(NaNOut(), **kwargs)(x, y)
