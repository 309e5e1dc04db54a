"""Image parameterizations: seeded starts, exact inverses, projections, rows that stay independent."""

from __future__ import annotations

import inspect

import pytest
import torch

import inputopt.params
from inputopt._config import instantiate
from inputopt.params import FourierImage, ImageParam, MacoImage, PixelImage
from tests.conftest import concrete_subclasses

SHAPE = (3, 16, 12)  # non-square, even/odd-free sizes catch transposed axes

#: Example constructor arguments per class; a new parameterization without one fails test_has_example.
EXAMPLES: dict[type, list[dict]] = {
    PixelImage: [dict(), dict(mean=0.5, std=0.1, clamp=(0, 1)), dict(decorrelate=True, sigmoid=(0, 1))],
    FourierImage: [dict(), dict(decay_power=0.5, mean=[0.4, 0.5, 0.6], std=0.05),
                   dict(decorrelate=True, sigmoid=(-1, 1), std=0.1)],
    MacoImage: [dict(), dict(sigmoid=(-1, 1)), dict(sigmoid=None),
                dict(magnitude=torch.rand(3, 8, 5, generator=torch.Generator().manual_seed(0)) + 0.1)],
}
#: Parameterizations whose images are a subset of all images (MACO: those of a fixed Fourier magnitude).
#: They cannot make arbitrary images: initialize_from and set_images_ give the nearest images of the set.
SUBSETS = {MacoImage}
CLASSES = concrete_subclasses(ImageParam, inputopt.params)
CASES = [pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}") for cls in CLASSES for i, kwargs in
         enumerate(EXAMPLES.get(cls) or [None])]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), f"{cls.__qualname__} is a new ImageParam: add examples to EXAMPLES in {__file__}"


def make(cls, kwargs, keys=(3, 7), seed=0) -> ImageParam:
    return cls(**kwargs).initialize(SHAPE, list(keys), seed)


@pytest.mark.parametrize("cls, kwargs", CASES)
class TestParamContract:
    def test_smoke(self, cls, kwargs):
        param = make(cls, kwargs)
        images = param()
        assert images.shape == (2, *SHAPE) and images.dtype == torch.float32 and torch.isfinite(images).all()
        assert [name for name, _ in param.named_parameters()] == [cls.parameter_name]
        assert param.tensor.shape[0] == 2 and torch.equal(param.start, images.detach())

    def test_images_stay_float32_under_autocast(self, cls, kwargs):
        param = make(cls, kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            images = param()
        assert images.dtype == torch.float32
        torch.testing.assert_close(images, param())

    def test_start_depends_only_on_seed_and_key(self, cls, kwargs):
        pair, alone = make(cls, kwargs, keys=(3, 7)), make(cls, kwargs, keys=(7,))
        assert torch.equal(pair()[1], alone()[0])
        assert not torch.equal(make(cls, kwargs, keys=(7,), seed=1)(), alone())
        assert not torch.equal(make(cls, kwargs, keys=(7, 7))()[0], make(cls, kwargs, keys=(7, 7))()[1])

    def test_initialize_from_images_round_trips(self, cls, kwargs):
        if cls in SUBSETS:
            pytest.skip(f"{cls.__name__} makes only some images; see test_initialize_from_its_own_images")
        param = cls(**kwargs)
        images = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
        param.initialize_from(images)
        torch.testing.assert_close(param(), images, rtol=1e-4, atol=1e-5)
        assert torch.equal(param.start, images)

    def test_initialize_from_its_own_images(self, cls, kwargs):
        """Images the parameterization can make (here: another seed's) start exactly as given."""
        images = make(cls, kwargs, keys=(11, 13), seed=5)().detach()
        param = cls(**kwargs).initialize_from(images)
        torch.testing.assert_close(param(), images, rtol=1e-4, atol=1e-5)

    def test_set_images_writes_only_the_given_rows(self, cls, kwargs):
        param = make(cls, kwargs)
        before = param().detach()
        target = make(cls, kwargs, keys=(5, 9), seed=2)().detach()  # images every parameterization can make
        param.set_images_(target, torch.tensor([False, True]))
        after = param().detach()
        torch.testing.assert_close(after[1], target[1], rtol=1e-4, atol=1e-5)
        assert torch.equal(after[0], before[0])

    def test_rows_are_independent(self, cls, kwargs):
        param = make(cls, kwargs)
        (grad,) = torch.autograd.grad(param()[1].sum(), param.tensor)
        assert grad[1].abs().sum() > 0 and torch.equal(grad[0], torch.zeros_like(grad[0]))

    @pytest.mark.parametrize("norm", ["Linf", "L2"])
    def test_projection_into_box_and_ball(self, cls, kwargs, norm):
        if "eps" not in inspect.signature(cls).parameters:
            pytest.skip(f"{cls.__name__} has no box or ball to project onto")
        options = {**kwargs, "clamp": (0.0, 1.0), "eps": 0.05, "norm": norm, "mean": 0.5}
        param = make(cls, options)
        start = param.start.clone()
        assert start.min() >= 0 and start.max() <= 1
        with torch.no_grad():
            param.tensor.add_(torch.randn_like(param.tensor))
        param.project_()
        images = param().detach()
        delta = (images - start).flatten(1)
        size = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
        assert (size <= 0.05 + 1e-5).all(), size
        assert images.min() >= -1e-5 and images.max() <= 1 + 1e-5

    def test_config_rebuilds_an_equal_param(self, cls, kwargs):
        param = make(cls, kwargs)
        rebuilt = instantiate(param.config()).initialize(SHAPE, [3, 7], 0)
        assert type(rebuilt) is cls and torch.equal(rebuilt(), param())
        assert repr(param).startswith(f"{cls.__name__}(")


class TestOptions:
    def test_pixel_start_is_mean_plus_noise(self):
        images = PixelImage(mean=0.5, std=0.01).initialize((1, 32, 32), [0, 1])()
        assert abs(images.mean().item() - 0.5) < 0.002 and 0.008 < images.std().item() < 0.012

    def test_fourier_std_is_about_the_pixel_std(self):
        images = FourierImage(std=0.1).initialize((3, 64, 64), list(range(8)))()
        assert 0.05 < images.std().item() < 0.15

    def test_fourier_spectrum_falls_off_like_one_over_f(self):
        """The starting images' energy sits in low frequencies (1/f), unlike white pixel noise."""
        def low_share(images):
            power = torch.fft.rfft2(images).abs().pow(2).mean((0, 1))
            fy, fx = torch.fft.fftfreq(64).abs().view(-1, 1), torch.fft.rfftfreq(64).view(1, -1)
            return (power[(fy < 0.1) & (fx < 0.1)].sum() / power.sum()).item()

        fourier = FourierImage(std=0.1).initialize((1, 64, 64), list(range(8)))()
        white = FourierImage(decay_power=0.0, std=0.1).initialize((1, 64, 64), list(range(8)))()
        assert low_share(fourier) > 0.5 > 0.1 > low_share(white)

    def test_sigmoid_keeps_images_inside_the_interval(self):
        param = FourierImage(sigmoid=(0.2, 0.4), std=3.0).initialize((1, 16, 16), [0])
        images = param()
        assert images.min() >= 0.2 and images.max() <= 0.4 and images.std() > 0.05

    def test_decorrelated_colours_follow_the_colour_matrix(self):
        """Decorrelated channels z of equal variance give colours with covariance M Mᵀ."""
        param = PixelImage(decorrelate=True, std=1.0).initialize((3, 64, 64), list(range(16)))
        pixels = param().detach().permute(0, 2, 3, 1).reshape(-1, 3)
        matrix = param.color_matrix
        torch.testing.assert_close(pixels.T.cov(), matrix @ matrix.T, rtol=0.1, atol=0.02)

    def test_exceptions(self):
        with pytest.raises(ValueError, match="images have 1 channel"):
            PixelImage(decorrelate=True).initialize((1, 8, 8), [0])
        with pytest.raises(ValueError, match=r"clamp must be \(low, high\)"):
            PixelImage(clamp=(1, 0))
        with pytest.raises(ValueError, match="eps must be >= 0"):
            PixelImage(eps=-0.1)
        with pytest.raises(ValueError, match="norm must be 'Linf' or 'L2'"):
            PixelImage(norm="L1")
        with pytest.raises(ValueError, match="std must be a finite number"):
            PixelImage(std=float("nan"))
        with pytest.raises(ValueError, match="invertible 3x3"):
            PixelImage(decorrelate=True, color_matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 0]])
        with pytest.raises(ValueError, match="mean has 2 values"):
            PixelImage(mean=[0.1, 0.2]).initialize((3, 8, 8), [0])
        with pytest.raises(RuntimeError, match="no tensor yet"):
            PixelImage()()
