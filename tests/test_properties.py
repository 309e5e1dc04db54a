"""Property tests (hypothesis): invariants over whole input spaces that example tests only sample.

- projections: ``project_lp_ball`` and ``ImageParam.project_`` land in the ε-ball and the box, are the
  nearest such point, apply the ball before the box, and leave points already inside where they are;
- batch independence: a unit's optimized image does not depend on the batch it is optimized in, nor on
  its position there (random transforms included), through :func:`inputopt.engine.optimize` and through a
  Lightning fit of :class:`~inputopt.InputOptimization`;
- the multi-scale edge energy is a quadratic form: ``h(a·x) = a²·h(x)``, and, because its blur pads with
  zeros, adding a constant is *not* free: ``h(x + c) = h(x) + c·⟨∇h(x), 1⟩ + c²·h(1)`` with ``h(1) > 0``;
- random sphere points lie at the radius from the centre.

Every test runs derandomized (``derandomize=True``, no example database), so CI sees the same examples
on every run; tensor contents come from a ``torch.Generator`` seeded by a drawn integer.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import warnings

import lightning as L
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from inputopt.engine import optimize
from inputopt.functional import lp_norms, multi_scale_edge_energy, project_lp_ball, random_sphere_points, RowRandom
from inputopt.loss import LossPath
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import UnitActivation
from inputopt.params import FourierImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transforms
from tests.conftest import make_tiny_net


def properties(max_examples: int, shrink: bool = True):
    """Reproducible hypothesis settings: the same examples on every run, no deadline (CI machines vary).

    ``shrink=False`` reports the first failing example as it is, for tests whose examples are too costly
    to shrink (minutes per failure)."""
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(max_examples=max_examples, derandomize=True, database=None, deadline=None, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow], print_blob=True)


seeds = st.integers(0, 2**31 - 1)
norms = st.sampled_from(["Linf", "L2"])
dtypes = st.sampled_from([torch.float32, torch.float64])


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rounding(dtype: torch.dtype, *tensors: torch.Tensor) -> float:
    """A few units in the last place of the largest magnitude among ``tensors``."""
    return 4 * torch.finfo(dtype).eps * max(float(t.abs().max()) for t in tensors)


# ----------------------------------------------------------------------------------------------------
# 1. Projections: inside the ball and the box, nearest, ball then box, inside points kept
# ----------------------------------------------------------------------------------------------------


@properties(300)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4), norm=norms,
       eps=st.one_of(st.just(0.0), st.floats(1e-3, 10.0)), spread=st.sampled_from([0.0, 1e-3, 0.1, 1.0, 30.0]),
       scale=st.sampled_from([0.0, 1.0, 100.0]), dtype=dtypes, seed=seeds)
def test_project_lp_ball_is_the_nearest_point_of_the_ball(shape, norm, eps, spread, scale, dtype, seed):
    g = generator(seed)
    center = torch.randn(shape, generator=g, dtype=dtype) * scale
    x = center + torch.randn(shape, generator=g, dtype=dtype) * spread
    out = project_lp_ball(x, center, eps, norm)
    assert out.shape == x.shape and out.dtype == dtype

    # inside the ball, up to the rounding of x − centre and centre + delta
    ulp = rounding(dtype, x, center) + 4 * torch.finfo(dtype).eps * eps
    row_size = math.prod(shape[1:])
    slack = ulp * (math.sqrt(row_size) if norm == "L2" else 1.0)
    sizes = lp_norms(out.double() - center.double(), norm)
    assert (sizes <= eps + slack).all(), (sizes.max().item(), eps)

    # a point already inside is kept, up to that same rounding (centre + (x − centre) is not always x)
    inside = lp_norms(x.double() - center.double(), norm) <= eps
    torch.testing.assert_close(out[inside], x[inside], rtol=0, atol=ulp)

    # no point of the ball is closer to x (Euclidean distance; the L∞ clamp is its nearest point too)
    inner = project_lp_ball(center + torch.randn(shape, generator=g, dtype=dtype) * (eps + 1e-3), center, eps, norm)
    distance = (x.double() - out.double()).flatten(1).norm(dim=1)
    assert (distance <= (x.double() - inner.double()).flatten(1).norm(dim=1) + 2 * ulp * math.sqrt(row_size)).all()

    # and projecting again changes nothing beyond rounding
    torch.testing.assert_close(project_lp_ball(out, center, eps, norm), out, rtol=0, atol=2 * ulp)


@st.composite
def constrained_params(draw):
    """An ImageParam class and options with a box and/or an ε-ball, and the image shape and batch size."""
    cls = draw(st.sampled_from([PixelImage, FourierImage]))
    channels = draw(st.sampled_from([1, 3]))
    shape = (channels, draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    box = draw(st.one_of(st.none(), st.tuples(st.floats(-3.0, 2.0), st.floats(0.05, 4.0))))
    options = dict(
        clamp=None if box is None else (box[0], box[0] + box[1]),
        eps=draw(st.one_of(st.none(), st.just(0.0), st.floats(1e-3, 2.0))),
        norm=draw(norms),
        decorrelate=channels == 3 and draw(st.booleans()),
    )
    return cls, options, shape, draw(st.integers(1, 4))


def _ball_then_box(images, start, options):
    """The constraint set's projection as documented: the ε-ball around ``start``, then the box."""
    if options["eps"] is not None:
        images = project_lp_ball(images, start, options["eps"], options["norm"])
    if options["clamp"] is not None:
        images = images.clamp(*options["clamp"])
    return images


@properties(200)
@given(case=constrained_params(), spread=st.sampled_from([0.01, 0.3, 3.0]),
       inside=st.lists(st.booleans(), min_size=4, max_size=4), seed=seeds)
def test_image_param_projection_into_ball_and_box(case, spread, inside, seed):
    cls, options, shape, batch = case
    g = generator(seed)
    clamp, eps, norm = options["clamp"], options["eps"], options["norm"]

    # starting images, some outside the box: the start (the ball's centre) is moved into it
    if clamp is None:
        first = torch.randn(batch, *shape, generator=g) * 2
    else:
        first = clamp[0] + (clamp[1] - clamp[0]) * (torch.rand(batch, *shape, generator=g) * 1.6 - 0.3)
    param = cls(**options).initialize_from(first)
    start = param.start.clone()
    assert torch.equal(start, first if clamp is None else first.clamp(*clamp))

    # images far out (most rows) or strictly inside the constraint set (rows marked inside)
    far = start + spread * torch.randn(batch, *shape, generator=g)
    near = start + 0.5 * (_ball_then_box(far, start, options) - start)
    rows_inside = torch.tensor(inside[:batch])
    param.set_images_(torch.where(rows_inside.view(-1, 1, 1, 1), near, far))
    before = param().detach().clone()

    param.project_()
    after = param().detach()

    # pixels without colour mixing are written as projected (the box exactly, the ball up to the rounding
    # of its arithmetic); other parameterizations go through their inverse map, exact up to ~1e-6
    exact = cls is PixelImage and not options["decorrelate"]
    ulp = rounding(torch.float32, before, start) + 4 * torch.finfo(torch.float32).eps * (eps or 0)
    tol = ulp if exact else 1e-5 * (1 + float(before.abs().max()))
    ball_tol = ulp + tol * (math.sqrt(math.prod(shape)) if norm == "L2" else 1.0)
    if clamp is not None:
        box_tol = 0.0 if exact else tol
        assert after.min() >= clamp[0] - box_tol and after.max() <= clamp[1] + box_tol
    if eps is not None:
        sizes = lp_norms(after.double() - start.double(), norm)
        assert (sizes <= eps + ball_tol).all(), (sizes.max().item(), eps)

    # the result is the ball's projection followed by the box's, not the other order
    expected = _ball_then_box(before, start, options)
    torch.testing.assert_close(after, expected, rtol=0, atol=tol)

    # rows already inside are unchanged: bitwise where the projection is the identity, else up to rounding
    kept = (expected == before).flatten(1).all(1)
    assert torch.equal(after[kept], before[kept])
    torch.testing.assert_close(after[rows_inside], before[rows_inside], rtol=0, atol=ball_tol)


# ----------------------------------------------------------------------------------------------------
# 2. A unit's result depends on (seed, unit) only: not on its batch or its position in it
# ----------------------------------------------------------------------------------------------------

STEPS = 3

#: image shape and {layer: number of units} of the networks below
NETWORKS = {
    "digits": ((1, 32, 32), {"features.4": 32, "features.7": 64, None: 10}),
    "tiny": ((3, 32, 32), {"features.0": 6, "features.4": 8, "classifier.3": 10}),
}

#: Fresh transform lists; the draws of every random one are per row and per step.
TRANSFORMS = {
    "none": lambda: [],
    "jitter": lambda: [Jitter(2)],
    "pad-jitter-scale": lambda: [Pad(2, value=0.5), Jitter(3), RandomScale(0.8, 1.2)],
    "scale-rotate": lambda: [RandomScale(0.9, 1.1), RandomRotate(15)],
}


@functools.lru_cache(maxsize=None)
def float64_network(name: str) -> nn.Module:
    """The network in float64, fed float32 images (which it casts).

    In float32, a batched convolution rounds differently from the same convolution on one image (~1e-7);
    where a pre-activation is that close to zero, a ReLU (and the max-pooling after it) routes the
    gradient differently, and Adam's first step, about ``lr·sign(gradient)``, turns that into pixel
    differences up to ~0.3 after three steps (seen with the digits network). That is float arithmetic, not
    seeding; in float64 the rounding is ~1e-16 and such ties do not occur, so what is left to compare is
    what the library controls: starting noise and transform draws per (seed, unit).
    """
    net = build_network("digits") if name == "digits" else make_tiny_net()
    net = copy.deepcopy(net).double()
    net.register_forward_pre_hook(lambda module, args: (args[0].double(), *args[1:]))
    return net


@st.composite
def unit_batches(draw, max_units: int = 4):
    name = draw(st.sampled_from(sorted(NETWORKS)))
    shape, layers = NETWORKS[name]
    layer = draw(st.sampled_from(list(layers)))
    units = draw(st.lists(st.integers(0, layers[layer] - 1), min_size=2, max_size=max_units, unique=True))
    order = draw(st.permutations(units))
    fourier = draw(st.booleans())
    decorrelate = shape[0] == 3 and draw(st.booleans())
    param_options = dict(mean=0.5, std=0.1, decorrelate=decorrelate)
    if fourier:
        param_options["sigmoid"] = (0.0, 1.0) if draw(st.booleans()) else None
    else:
        param_options["clamp"] = (0.0, 1.0)
        param_options["eps"] = draw(st.sampled_from([None, 0.15]))
    return dict(network=name, shape=shape, layer=layer, units=units, order=order,
                param_cls=FourierImage if fourier else PixelImage, param_options=param_options,
                transforms=draw(st.sampled_from(sorted(TRANSFORMS))), prior=draw(st.booleans()),
                seed=draw(st.integers(0, 1000)))


def _optimize_units(case: dict, units: list[int]) -> torch.Tensor:
    """Optimize ``units`` together in one batch with inputopt.engine.optimize; their images, in that order."""
    param = case["param_cls"](**case["param_options"]).initialize(case["shape"], units, case["seed"])
    path = LossPath(float64_network(case["network"]), UnitActivation(case["layer"], unit=list(units)),
                    [MultiScaleEdgeEnergy(0.05)] if case["prior"] else [],
                    Transforms(TRANSFORMS[case["transforms"]]()))
    optimize(param, path, STEPS, seeds=RowRandom(case["seed"]).stream("start").seeds(units))
    return param().detach()


def _assert_same_per_unit(case: dict, run) -> None:
    together = run(case, case["units"])
    reordered = run(case, case["order"])
    for i, unit in enumerate(case["units"]):
        alone = run(case, [unit])[0]
        torch.testing.assert_close(together[i], alone, rtol=0, atol=1e-5, msg=lambda m: f"unit {unit}: {m}")
        torch.testing.assert_close(reordered[case["order"].index(unit)], alone, rtol=0, atol=1e-5,
                                   msg=lambda m: f"unit {unit}, order {case['order']}: {m}")
    # the images did move (otherwise equality would prove nothing)
    start = case["param_cls"](**case["param_options"]).initialize(case["shape"], case["units"], case["seed"])()
    assert (together - start.detach()).abs().amax() > 1e-3


@properties(25, shrink=False)
@given(case=unit_batches())
def test_a_units_image_does_not_depend_on_its_batch(case):
    _assert_same_per_unit(case, _optimize_units)


@pytest.fixture(scope="module")
def trainer_kwargs(tmp_path_factory) -> dict:
    return dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path_factory.mktemp("properties"))


@properties(6, shrink=False)
@given(case=unit_batches(max_units=3))
def test_a_units_image_does_not_depend_on_its_batch_in_a_fit(case, trainer_kwargs):
    def fit(case, units):
        module = InputOptimization(Problem(float64_network(case["network"]),
                                           UnitActivation(case["layer"], unit=list(units)),
                                           priors=[MultiScaleEdgeEnergy(0.05)] if case["prior"] else None,
                                           param=case["param_cls"](**case["param_options"]),
                                           transforms=TRANSFORMS[case["transforms"]](), seed=case["seed"]),
                                   image_shape=case["shape"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the images in float64 too: a Fourier image's inverse FFT of a batch rounds differently from one
            # image's (~1e-7 in float32), which the ReLU ties and Adam's first step above turn into pixel
            # differences (0.19 for digits, units [0, 6, 3], Fourier, scale-rotate, seed 218; 4e-16 in float64)
            L.Trainer(max_steps=STEPS, precision="64-true", **trainer_kwargs).fit(module)
        return module.images()

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    _assert_same_per_unit(case, fit)


# ----------------------------------------------------------------------------------------------------
# 3. The multi-scale edge energy: a quadratic form, and what adding a constant does under zero padding
# ----------------------------------------------------------------------------------------------------

image_batches = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(6, 24), st.integers(6, 24))
kernels = st.tuples(st.sampled_from([1, 3, 5, 7]), st.floats(0.3, 3.0))


@properties(60)
@given(shape=image_batches, kernel=kernels, a=st.floats(-20.0, 20.0), dtype=dtypes, seed=seeds)
def test_edge_energy_scales_quadratically(shape, kernel, a, dtype, seed):
    x = torch.randn(shape, generator=generator(seed), dtype=dtype) * 3 + 1
    prior = MultiScaleEdgeEnergy(kernel_size=kernel[0], sigma=kernel[1])
    expected = a**2 * prior(x)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(prior(a * x), expected, rtol=rtol, atol=rtol * float(expected.abs().max()) + 1e-30)


@properties(60)
@given(shape=image_batches, kernel=kernels, c=st.floats(-10.0, 10.0), seed=seeds)
def test_edge_energy_constant_shift_is_a_border_term(shape, kernel, c, seed):
    """h is not invariant to adding a constant: the blur pads with zeros (and the pooling counts its
    zero padding), so a constant image has edges along its border. What holds exactly:
    ``h(x + c) = h(x) + c·⟨∇h(x), 1⟩ + c²·h(1)``, with ``h(1)`` (the border's energy) the same for every x,
    and positive unless the kernel is a single pixel (no blur, so h ≡ 0)."""
    x = torch.randn(shape, generator=generator(seed), dtype=torch.float64, requires_grad=True)
    size, sigma = kernel
    energy = multi_scale_edge_energy(x, size, sigma)
    (gradient,) = torch.autograd.grad(energy.sum(), x)
    x = x.detach()
    ones = torch.ones_like(x)
    border = multi_scale_edge_energy(ones, size, sigma)
    expected = energy.detach() + c * gradient.flatten(1).sum(1) + c**2 * border
    shifted = multi_scale_edge_energy(x + c, size, sigma)
    scale = float(energy.detach().abs().max() + c**2 * border.max()) + 1.0
    torch.testing.assert_close(shifted, expected, rtol=1e-9, atol=1e-9 * scale)
    if size == 1:
        assert torch.equal(border, torch.zeros_like(border))
    else:
        assert (border > 0).all()
        # the constant image's energy is exactly that border term, scaled by c²
        torch.testing.assert_close(multi_scale_edge_energy(c * ones, size, sigma), c**2 * border,
                                   rtol=1e-12, atol=1e-300)


# ----------------------------------------------------------------------------------------------------
# 4. Random sphere points lie at the radius
# ----------------------------------------------------------------------------------------------------


@properties(150)
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4), n=st.integers(1, 20),
       radius=st.floats(1e-3, 1e3), center_scale=st.sampled_from([0.0, 1.0, 50.0]), dtype=dtypes, seed=seeds)
def test_random_sphere_points_lie_at_the_radius(shape, n, radius, center_scale, dtype, seed):
    g = generator(seed)
    center = torch.randn(shape, generator=g, dtype=dtype) * center_scale
    points = random_sphere_points(center, radius, n, generator=g)
    assert points.shape == (n, *shape) and points.dtype == dtype
    distances = (points.double() - center.double()).flatten(1).norm(dim=1)
    # relative 1e-5, plus the rounding of centre + offset in the points' dtype (which a tiny radius
    # around a large centre cannot escape in float32)
    atol = rounding(dtype, center) * math.sqrt(center.numel()) if center_scale else 0.0
    torch.testing.assert_close(distances, torch.full((n,), radius, dtype=torch.float64), rtol=1e-5, atol=atol)
