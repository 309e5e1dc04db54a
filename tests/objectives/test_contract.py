"""The objective contract, checked for every concrete InputObjective subclass of the package.

Subclasses are discovered by walking ``InputObjective.__subclasses__()`` after importing every module of
``inputopt.objectives`` (the way timm parametrizes its tests over its registry). Each needs example
constructor arguments valid for the tiny network in ``EXAMPLES`` below: a new objective without one makes
``test_has_example`` fail, so it is noticed (and then tested) the moment it exists.
"""

from __future__ import annotations

import copy

import pytest
import torch

import inputopt.objectives
from inputopt.capture import capture_activations, resolve_layer
from inputopt.objectives import ChannelSum, InputObjective, NegativeCrossEntropy, UnitActivation
from tests.conftest import concrete_subclasses
from tests.conftest import make_tiny_net

B = 3  # images per batch in every example; list-valued units have one entry per image

#: Example constructor arguments per class, valid for ``TinyConvNet`` on (B, 3, 32, 32) inputs. Prefer
#: layers before a ReLU, so that every score has a non-zero gradient.
EXAMPLES: dict[type, list[dict]] = {
    UnitActivation: [
        dict(layer="features.4", unit=[1, 5, 7]),
        dict(layer="features.0", unit=2, position=(3, 30)),
        dict(layer="classifier.1", unit=[0, 8, 15]),
        dict(layer=None, unit=3),
    ],
    ChannelSum: [
        dict(layer="features.4", channel=[0, 3, 7]),
        dict(layer="features.0", channel=5),
    ],
    NegativeCrossEntropy: [
        dict(),
        dict(labels=[1, 2, 3]),
        dict(target=[4, 5, 6]),
        dict(target=2, layer="classifier.3"),
    ],
}


CLASSES = concrete_subclasses(InputObjective, inputopt.objectives)
CASES = [pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}")
         for cls in CLASSES for i, kwargs in enumerate(EXAMPLES.get(cls) or [None])]


def test_discovery_finds_known_objectives():
    assert {UnitActivation, ChannelSum, NegativeCrossEntropy} <= set(CLASSES)
    assert InputObjective not in CLASSES  # abstract


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), (f"{cls.__module__}.{cls.__qualname__} is a new InputObjective: add example "
                               f"constructor arguments for the tiny network to EXAMPLES in {__file__}")


def test_no_stale_examples():
    assert set(EXAMPLES) <= set(CLASSES)


# -- helpers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    return make_tiny_net().requires_grad_(False)


def _images(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def build(cls, kwargs, net, x):
    """The objective, prepared on the starting input ``x``, and its ``forward``."""
    if kwargs is None:
        pytest.fail(f"no example for {cls.__name__}: add one to EXAMPLES")
    objective = cls(**kwargs)

    def forward(images):
        return capture_activations(net, images, objective.layers)

    objective.prepare(forward, x)
    return objective, forward


# -- the contract ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", CASES)
class TestObjectiveContract:
    def test_smoke(self, cls, kwargs, net):
        x = _images()
        objective, forward = build(cls, kwargs, net, x)
        score = objective(forward(x))
        assert score.shape == (B,)
        assert score.dtype == torch.float32
        assert torch.isfinite(score).all()

    def test_layers_exist(self, cls, kwargs, net):
        objective = cls(**kwargs)
        assert objective.layers and all(isinstance(name, str) for name in objective.layers)
        for name in objective.layers:
            resolve_layer(net, name)

    def test_rows_independent(self, cls, kwargs, net):
        x = _images()
        objective, forward = build(cls, kwargs, net, x)
        score = objective(forward(x))
        for j in range(B):
            changed = x.clone()
            changed[j] = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(100 + j)) * 3
            other = objective(forward(changed))
            keep = [i for i in range(B) if i != j]
            torch.testing.assert_close(other[keep], score[keep], rtol=1e-6, atol=1e-6)
            assert other[j] != score[j]

    def test_gradient(self, cls, kwargs, net):
        x0 = _images()
        objective, forward = build(cls, kwargs, net, x0)
        for i in range(B):
            x = x0.clone().requires_grad_(True)
            score = objective(forward(x))
            assert score.requires_grad, f"{cls.__name__} gives a score without a gradient"
            (grad,) = torch.autograd.grad(score[i], x)
            assert grad[i].abs().sum() > 0
            others = [j for j in range(B) if j != i]
            assert torch.equal(grad[others], torch.zeros_like(grad[others]))

    def test_float32_under_autocast(self, cls, kwargs, net):
        x = _images()
        objective, forward = build(cls, kwargs, net, x)
        expected = objective(forward(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            acts = forward(x)
            score = objective(acts)
        assert any(a.dtype == torch.bfloat16 for a in acts.values())  # the network did run in bf16
        assert score.dtype == torch.float32
        torch.testing.assert_close(score, expected, rtol=0.1, atol=0.1 * expected.abs().max().item() + 0.05)

    def test_deterministic_and_copyable(self, cls, kwargs, net):
        x = _images()
        objective, forward = build(cls, kwargs, net, x)
        again, _ = build(cls, kwargs, net, x)
        copied = copy.deepcopy(objective)
        score = objective(forward(x))
        assert torch.equal(again(forward(x)), score)
        assert torch.equal(copied(forward(x)), score)

    def test_repr(self, cls, kwargs, net):
        objective = cls(**kwargs)
        text = repr(objective)
        assert text.startswith(f"{cls.__name__}(")
        for name, value in kwargs.items():
            assert f"{name}=" in text, f"repr {text!r} does not show argument {name}"
            if value is not None:
                assert f"{name}={value!r}" in text, f"repr {text!r} does not show {name}={value!r}"

    def test_config_rebuilds_an_equal_objective(self, cls, kwargs, net):
        from inputopt._config import instantiate

        objective = cls(**kwargs)
        rebuilt = instantiate(objective.config())
        assert type(rebuilt) is cls and rebuilt.config() == objective.config()

    def test_rows_and_keys(self, cls, kwargs, net):
        objective = cls(**kwargs)
        assert objective.num_rows in (None, B)
        keys = objective.row_keys(B)
        assert len(keys) == B and all(isinstance(k, int) for k in keys)

    def test_is_done(self, cls, kwargs, net):
        x = _images()
        objective, forward = build(cls, kwargs, net, x)
        done = objective.is_done(forward(x))
        if done is not None:
            assert done.shape == (B,)
            assert done.dtype == torch.bool


# -- the base class's plumbing, which the contract rests on ----------------------------------------------


class TestBasePlumbing:
    def test_exception_wrong_shape(self):
        class Bad(InputObjective):
            def forward(self, activations):
                return activations[self.layer].flatten(1)  # (B, N), not (B,)

        with pytest.raises(ValueError, match=r"one score per image, shape \(2,\); got \(2, 4\)"):
            Bad("a")({"a": torch.zeros(2, 4)})

    def test_exception_missing_layer(self):
        with pytest.raises(KeyError, match="features.9"):
            ChannelSum("features.9", channel=0)({"features.4": torch.zeros(2, 4, 3, 3)})

    def test_result_cast_to_float32(self):
        score = ChannelSum("a", channel=0)({"a": torch.ones(2, 3, 2, 2, dtype=torch.float64)})
        assert score.dtype == torch.float32
        assert torch.equal(score, torch.full((2,), 4.0))

    def test_none_layer_is_output(self):
        assert UnitActivation(None, unit=0).layers == ("",)
