"""Transforms: batched, differentiable, seeded per row and step, checked against exact references."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import inputopt.transforms
from inputopt._config import instantiate
from inputopt.functional.geometry import affine_sample, translation_matrices
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transform, Transforms
from tests.conftest import concrete_subclasses

EXAMPLES: dict[type, list[dict]] = {
    Pad: [dict(width=3), dict(width=2, mode="reflect"), dict(width=1, value=0.5)],
    Jitter: [dict(pixels=2)],
    RandomScale: [dict(low=0.8, high=1.2)],
    RandomRotate: [dict(degrees=15), dict(degrees=(-5, 30))],
}
CLASSES = concrete_subclasses(Transform, inputopt.transforms)
CASES = [pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}") for cls in CLASSES
         for i, kwargs in enumerate(EXAMPLES.get(cls) or [None])]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), f"{cls.__qualname__} is a new Transform: add examples to EXAMPLES in {__file__}"


def _images(batch=3, seed=0, dtype=torch.float32):
    return torch.rand(batch, 2, 12, 10, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("cls, kwargs", CASES)
class TestTransformContract:
    def test_rows_depend_on_their_own_image_and_draws(self, cls, kwargs):
        transform = cls(**kwargs)
        x, u = _images(), torch.rand(3, transform.num_random, generator=torch.Generator().manual_seed(1))
        out = transform(x, u)
        for i in range(3):
            torch.testing.assert_close(transform(x[i:i + 1], u[i:i + 1]), out[i:i + 1])

    def test_gradcheck(self, cls, kwargs):
        transform = cls(**kwargs)
        x = _images(batch=2, dtype=torch.float64)[:, :1, :6, :6].clone().requires_grad_(True)
        u = torch.rand(2, transform.num_random, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        assert torch.autograd.gradcheck(lambda images: transform(images, u), (x,), fast_mode=True)

    def test_config_rebuilds(self, cls, kwargs):
        transform = cls(**kwargs)
        rebuilt = instantiate(transform.config())
        u = torch.rand(3, transform.num_random)
        assert torch.equal(rebuilt(_images(), u), transform(_images(), u))


class TestReferences:
    def test_pad_is_torch_pad(self):
        x = _images()
        assert torch.equal(Pad(2, value=0.5)(x, torch.empty(3, 0)), F.pad(x, (2, 2, 2, 2), value=0.5))
        assert torch.equal(Pad(2, mode="reflect")(x, torch.empty(3, 0)), F.pad(x, (2, 2, 2, 2), mode="reflect"))

    def test_jitter_is_a_whole_pixel_roll(self):
        """Draws map to shifts -2..2; in the interior a shift is an exact roll of the pixels."""
        x = _images()
        u = torch.tensor([[0.0, 0.99], [0.5, 0.5], [0.3, 0.7]], dtype=torch.float64)  # shifts (-2, 2), (0, 0), (-1, 1)
        out = Jitter(2)(x, u)
        for i, (dx, dy) in enumerate([(-2, 2), (0, 0), (-1, 1)]):
            rolled = torch.roll(x[i], shifts=(dy, dx), dims=(1, 2))
            torch.testing.assert_close(out[i, :, 2:-2, 2:-2], rolled[:, 2:-2, 2:-2], rtol=0, atol=1e-6)

    def test_rotate_quarter_turn_is_rot90(self):
        x = torch.rand(2, 3, 9, 9)
        out = RandomRotate((90, 90))(x, torch.rand(2, 1))
        torch.testing.assert_close(out, torch.rot90(x, 1, dims=(2, 3)), rtol=0, atol=1e-5)

    def test_scale_two_magnifies_the_centre(self):
        x = torch.zeros(1, 1, 8, 8)
        x[..., 3:5, 3:5] = 1.0  # a 2x2 square at the centre becomes 4x4
        out = RandomScale(2.0, 2.0)(x, torch.rand(1, 1))
        assert (out[0, 0] > 0.5).sum() == 16 and out[0, 0, 2:6, 2:6].min() > 0.5

    def test_exceptions(self):
        with pytest.raises(ValueError, match="width must be an int >= 0"):
            Pad(-1)
        with pytest.raises(ValueError, match="mode must be"):
            Pad(1, mode="circular")
        with pytest.raises(ValueError, match="pixels must be an int >= 0"):
            Jitter(1.5)
        with pytest.raises(ValueError, match="scale factors must be > 0"):
            RandomScale(0.0, 1.0)
        with pytest.raises(ValueError, match="low <= high"):
            RandomRotate((10, -10))
        with pytest.raises(ValueError, match="Transform instances"):
            Transforms([torch.nn.ReLU()])


class TestTransforms:
    LIST = [Pad(4, value=0.5), Jitter(2), RandomScale(0.9, 1.1), RandomRotate(10), Jitter(1)]

    def test_a_row_depends_on_its_seed_and_step_only(self):
        transforms = Transforms(self.LIST)
        x = _images()
        out = transforms(x, [11, 12, 13], step=5)
        assert out.shape == (3, 2, 12, 10)  # the input's size: the network sees the configured size
        torch.testing.assert_close(transforms(x[1:2], [12], step=5), out[1:2])  # another batch, same row
        torch.testing.assert_close(transforms(x[[2, 1]], [13, 12], step=5), out[[2, 1]])
        assert not torch.allclose(transforms(x, [11, 12, 13], step=6), out)
        assert not torch.allclose(transforms(x, [21, 12, 13], step=5)[0], out[0])

    def test_consecutive_affine_transforms_are_one_resampling(self, monkeypatch):
        calls = []
        original = F.grid_sample
        monkeypatch.setattr(F, "grid_sample", lambda *a, **k: calls.append(1) or original(*a, **k))
        Transforms(self.LIST)(_images(), [1, 2, 3], step=0)
        assert len(calls) == 1  # jitter, scale, rotate and jitter: one grid_sample for the whole batch

    def test_fused_equals_sequential_for_whole_pixel_shifts(self):
        """Two integer shifts fused in one matrix sample exactly what applying them one after the other does."""
        x = _images()
        a, b = translation_matrices(torch.tensor([1.0, -2.0, 0.0]), torch.tensor([0.0, 1.0, 2.0])), \
            translation_matrices(torch.tensor([2.0, 1.0, -1.0]), torch.tensor([-1.0, 0.0, 1.0]))
        fused = affine_sample(x, a @ b, "zeros")
        sequential = affine_sample(affine_sample(x, a, "zeros"), b, "zeros")
        torch.testing.assert_close(fused[..., 3:-3, 3:-3], sequential[..., 3:-3, 3:-3], rtol=0, atol=1e-6)

    def test_output_has_the_input_size(self):
        """Pad + jitter + scale + rotate: the network gets images of the configured size, in one resampling,
        whatever transform comes last; keep_size=False keeps the padded size."""
        x = _images()
        for transforms in (self.LIST, [Pad(4)], [Jitter(2), Pad(3)], [Pad(2), Jitter(1), Pad(2)]):
            assert Transforms(transforms)(x, [1, 2, 3], step=0).shape == x.shape
        assert Transforms(self.LIST, keep_size=False)(x, [1, 2, 3], step=0).shape == (3, 2, 20, 18)

    def test_kept_size_is_the_padded_view_resized(self):
        """Resizing happens in the same grid_sample: equal to padding, sampling at the padded size, then
        resizing bilinearly (for an exact 2x factor, where a bilinear resize is a 2x2 average)."""
        x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
        out = Transforms([Pad(4, value=0.5), RandomScale(1.0, 1.0)])(x, [1, 2], step=0)
        padded = F.pad(x, (4, 4, 4, 4), value=0.5)
        torch.testing.assert_close(out, F.avg_pool2d(padded, 2), rtol=0, atol=1e-6)
        assert torch.equal(Transforms([Pad(4, value=0.5)])(x, [1, 2], step=0),
                           F.interpolate(padded, size=(8, 8), mode="bilinear", align_corners=False, antialias=True))

    def test_exception_seed_count(self):
        with pytest.raises(ValueError, match="3 images but 2 row seeds"):
            Transforms(self.LIST)(_images(), [1, 2], step=0)
