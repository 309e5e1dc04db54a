"""The prior contract, checked for every concrete Prior subclass of the package.

Subclasses are discovered by walking ``Prior.__subclasses__()`` after importing every module of
``inputopt.priors``. Each needs example constructor arguments in ``EXAMPLES``: a new prior without one
makes ``test_has_example`` fail, so it is noticed (and then tested) the moment it exists.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
import torch

import inputopt.priors
from inputopt.priors import BlurPenalty, Distance, LpNorm, MultiScaleEdgeEnergy, Prior, TotalVariation
from tests.conftest import concrete_subclasses

B = 3


@dataclass
class Example:
    kwargs: dict = field(default_factory=dict)
    nonnegative: bool = True  # a penalty that is >= 0 by nature (a sum of squares, a norm, ...)
    true_gradient: bool = True  # False where the gradient is deliberately not the value's (a stop-gradient)


EXAMPLES: dict[type, list[Example]] = {
    MultiScaleEdgeEnergy: [
        Example(dict(weight=0.5)),
        Example(dict(weight=2, kernel_size=3, sigma=0.7)),
        Example(dict()),
    ],
    TotalVariation: [
        Example(dict(weight=0.1)),
        Example(dict(weight=2.0, isotropic=True)),
    ],
    LpNorm: [
        Example(dict()),
        Example(dict(weight=0.5, p=1, center=0.5)),
        Example(dict(weight=0.01, p=3.5, center=-0.25, root=True)),
    ],
    Distance: [
        Example(dict()),
        Example(dict(weight=0.5, p=1, root=True)),
    ],
    BlurPenalty: [
        Example(dict(weight=0.5), true_gradient=False),
        Example(dict(weight=1, kernel_size=5, sigma=2.0), true_gradient=False),
    ],
}


CLASSES = concrete_subclasses(Prior, inputopt.priors)
CASES = [pytest.param(cls, example, id=f"{cls.__name__}-{i}")
         for cls in CLASSES for i, example in enumerate(EXAMPLES.get(cls) or [None])]


def test_discovery_finds_known_priors():
    assert MultiScaleEdgeEnergy in CLASSES
    assert Prior not in CLASSES


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), (f"{cls.__module__}.{cls.__qualname__} is a new Prior: add example constructor "
                               f"arguments to EXAMPLES in {__file__}")


def test_no_stale_examples():
    assert set(EXAMPLES) <= set(CLASSES)


def _images(seed: int = 0, shape=(B, 3, 24, 20)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def reference(x: torch.Tensor) -> torch.Tensor:
    """A centred prior's per-row reference for images like ``x``: the same fixed pattern in every row, so that a
    row of ``x`` and its reference slice together."""
    pattern = torch.sin(torch.arange(x[0].numel(), dtype=torch.float64)).reshape(x.shape[1:])
    return pattern.to(x.device, torch.float64 if x.dtype == torch.float64 else torch.float32).expand(x.shape)


def call(prior: Prior, x: torch.Tensor) -> torch.Tensor:
    """``prior(x)``, with the rows' reference for a centred prior (:class:`Distance`)."""
    return prior(x, reference(x)) if prior.centred else prior(x)


def build(cls, example):
    if example is None:
        pytest.fail(f"no example for {cls.__name__}: add one to EXAMPLES")
    return cls(**example.kwargs)


@pytest.mark.parametrize("cls, example", CASES)
class TestPriorContract:
    @pytest.mark.parametrize("shape", [(B, 3, 24, 20), (1, 1, 32, 32), (2, 3, 17, 31)])
    def test_smoke(self, cls, example, shape):
        x = _images(shape=shape)
        penalty = call(build(cls, example), x)
        assert penalty.shape == (shape[0],)
        assert penalty.dtype == torch.float32
        assert torch.isfinite(penalty).all()

    def test_nonnegative(self, cls, example):
        if not example.nonnegative:
            pytest.skip("this prior is not non-negative by nature")
        prior = build(cls, example)
        x = torch.cat([_images(1) * 10, _images(2) + 5, torch.zeros(1, 3, 24, 20)])
        assert (call(prior, x) >= 0).all()

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_input_computed_in_float32(self, cls, example, dtype):
        prior = build(cls, example)
        x = _images().to(dtype)
        penalty = call(prior, x)
        assert penalty.dtype == torch.float32
        # computed on the float32 values, not in half precision
        torch.testing.assert_close(penalty, call(prior, x.float()), rtol=1e-6, atol=1e-6)

    def test_float32_under_autocast(self, cls, example):
        prior = build(cls, example)
        x = _images()
        expected = call(prior, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            penalty = call(prior, x)
        assert penalty.dtype == torch.float32
        torch.testing.assert_close(penalty, expected, rtol=1e-6, atol=1e-6)

    def test_rows_independent(self, cls, example):
        prior = build(cls, example)
        x = _images()
        penalty = call(prior, x)
        for i in range(B):
            torch.testing.assert_close(call(prior, x[i:i + 1]), penalty[i:i + 1], rtol=1e-6, atol=1e-6)
        changed = x.clone()
        changed[1] = changed[1] * 4 + 1
        other = call(prior, changed)
        torch.testing.assert_close(other[[0, 2]], penalty[[0, 2]], rtol=1e-6, atol=1e-6)
        assert other[1] != penalty[1]

    def test_gradient(self, cls, example):
        prior = build(cls, example)
        x = _images().requires_grad_(True)
        (grad,) = torch.autograd.grad(call(prior, x)[1], x)
        assert grad[1].abs().sum() > 0
        assert torch.equal(grad[[0, 2]], torch.zeros_like(grad[[0, 2]]))

    def test_gradcheck(self, cls, example):
        if not example.true_gradient:
            pytest.skip("the gradient is deliberately not the value's (tested against its own formula)")
        prior = build(cls, example)
        x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
        assert call(prior, x).dtype == torch.float64  # float64 passes through, for gradcheck
        assert torch.autograd.gradcheck(lambda images: call(prior, images), (x,), fast_mode=True)

    def test_weight_stored(self, cls, example):
        prior = build(cls, example)
        weight = example.kwargs.get("weight", 1.0)
        assert isinstance(prior.weight, float)
        assert prior.weight == weight
        # the weight is applied by the module, not by the prior
        unit = cls(**{**example.kwargs, "weight": 1.0})
        x = _images()
        torch.testing.assert_close(call(prior, x), call(unit, x))

    def test_repr(self, cls, example):
        prior = build(cls, example)
        text = repr(prior)
        assert text.startswith(f"{cls.__name__}(")
        assert "weight=" in text
        for name, value in example.kwargs.items():  # the repr shows the arguments as they were given
            assert f"{name}={value!r}" in text

    def test_config_rebuilds_an_equal_prior(self, cls, example):
        from inputopt._config import instantiate

        prior = build(cls, example)
        rebuilt = instantiate(prior.config())
        assert type(rebuilt) is cls and rebuilt.config() == prior.config()
        x = _images()
        torch.testing.assert_close(call(rebuilt, x), call(prior, x))

    def test_deepcopy(self, cls, example):
        prior = build(cls, example)
        x = _images()
        assert torch.equal(call(copy.deepcopy(prior), x), call(prior, x))

    def test_checkpoint_round_trip(self, cls, example, tmp_path):
        """A fit's checkpoint rebuilds the module with this prior, to the same loss."""
        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint

        from inputopt import InputOptimization, UnitActivation
        from inputopt.problem import Problem
        from tests.conftest import make_tiny_net

        net = make_tiny_net()
        module = InputOptimization(Problem(net, UnitActivation(None, unit=[1, 2]), [build(cls, example)]),
                                   image_shape=(3, 32, 32))
        Trainer(max_steps=2, logger=False, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)],
                enable_progress_bar=False, enable_model_summary=False).fit(module)
        saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["hyper_parameters"]["problem"]
        # the prior rebuilt from the checkpoint's problem config, with the module given again
        restored = InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt",
                                                          problem=Problem.of({**saved, "network": net}))
        assert restored.priors[0].config() == module.priors[0].config()
        torch.testing.assert_close(restored.compute_loss(restored.param())["loss"],
                                   module.compute_loss(module.param())["loss"])


class TestBasePlumbing:
    def test_exception_wrong_shape(self):
        class Bad(Prior):
            def forward(self, x):
                return x.sum()

        with pytest.raises(ValueError, match=r"one penalty per image, shape \(2,\); got \(\)"):
            Bad()(torch.zeros(2, 3, 8, 8))

    @pytest.mark.parametrize("weight", [float("nan"), float("inf"), "0.5", True])
    def test_exception_weight_not_a_finite_number(self, weight):
        with pytest.raises(ValueError, match="weight must be a finite number"):
            MultiScaleEdgeEnergy(weight=weight)

    def test_forward_sees_float32(self):
        seen = []

        class Spy(Prior):
            def forward(self, x):
                seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
                return x.flatten(1).sum(1)

        with torch.autocast("cpu", dtype=torch.bfloat16):
            Spy()(torch.zeros(2, 3, 8, 8, dtype=torch.bfloat16))
        assert seen == [(torch.float32, False)]
