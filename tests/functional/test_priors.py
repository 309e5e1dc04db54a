"""total_variation, lp_norm and blur_penalty against direct loops and explicit formulas on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from inputopt.functional import blur_penalty, gaussian_kernel2d, lp_norm, normalized_blur, total_variation
from inputopt.priors import BlurPenalty, LpNorm, TotalVariation


def _images(shape=(2, 3, 5, 6), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def tv_reference(x: torch.Tensor, isotropic: bool) -> torch.Tensor:
    """Pixel by pixel, forward differences; the isotropic form counts a difference past the border as 0."""
    batch, channels, height, width = x.shape
    out = torch.zeros(batch, dtype=x.dtype)
    for b in range(batch):
        total = 0.0
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    dv = x[b, c, i + 1, j] - x[b, c, i, j] if i + 1 < height else 0.0
                    dh = x[b, c, i, j + 1] - x[b, c, i, j] if j + 1 < width else 0.0
                    total += math.sqrt(dv**2 + dh**2) if isotropic else abs(dv) + abs(dh)
        out[b] = total
    return out


def blur_reference(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each pixel: the kernel-weighted mean of the neighbours that exist (weights renormalized)."""
    batch, channels, height, width = x.shape
    r = kernel.shape[0] // 2
    out = torch.zeros_like(x)
    for b in range(batch):
        for c in range(channels):
            for i in range(height):
                for j in range(width):
                    num = den = 0.0
                    for di in range(-r, r + 1):
                        for dj in range(-r, r + 1):
                            if 0 <= i + di < height and 0 <= j + dj < width:
                                w = kernel[di + r, dj + r].item()
                                num += w * x[b, c, i + di, j + dj].item()
                                den += w
                    out[b, c, i, j] = num / den
    return out


class TestTotalVariation:
    @pytest.mark.parametrize("isotropic", [False, True])
    @pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 1, 1, 4), (3, 2, 4, 1)])
    def test_matches_reference(self, isotropic, shape):
        x = _images(shape)
        torch.testing.assert_close(total_variation(x, isotropic), tv_reference(x, isotropic))

    def test_anisotropic_is_kornia_and_tensorflow_formula(self):
        # the same sums as kornia.losses.total_variation / tf.image.total_variation: |dv| + |dh| over all pairs
        x = _images()
        expected = (x.diff(dim=2).abs().sum((1, 2, 3)) + x.diff(dim=3).abs().sum((1, 2, 3)))
        torch.testing.assert_close(total_variation(x), expected)

    def test_isotropic_differs_only_where_both_directions_change(self):
        # an edge along an axis costs the same in both forms; a diagonal ramp costs sqrt(2) per pixel, not 2
        axis = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
        axis[..., 4:] = 1.0
        assert total_variation(axis, True).item() == total_variation(axis).item() == 8.0
        i, j = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
        ramp = (i + j).to(torch.float64)[None, None]
        interior = 5 * 5  # pixels with both a vertical and a horizontal neighbour
        edge = 2 * 5  # last row or column: one difference only
        assert total_variation(ramp).item() == pytest.approx(2 * interior + edge)
        assert total_variation(ramp, True).item() == pytest.approx(math.sqrt(2) * interior + edge)

    def test_constant_image_zero_and_gradient_finite(self):
        x = torch.full((1, 3, 6, 6), 0.7, requires_grad=True)
        for isotropic in (False, True):
            value = total_variation(x, isotropic)
            assert value.item() == 0.0
            (grad,) = torch.autograd.grad(value.sum(), x)
            assert torch.isfinite(grad).all()

    def test_prior_is_the_function(self):
        x = _images().float()
        torch.testing.assert_close(TotalVariation(weight=3.0, isotropic=True)(x), total_variation(x, True))

    def test_exception_rank(self):
        with pytest.raises(ValueError, match=r"\(B, C, H, W\), got a tensor of shape \(3, 4\)"):
            total_variation(torch.zeros(3, 4))


class TestLpNorm:
    @pytest.mark.parametrize("p", [1, 1.5, 2, 3])
    def test_matches_reference(self, p):
        x = _images()
        expected = torch.tensor([sum(abs(v) ** p for v in row.flatten().tolist()) for row in x], dtype=x.dtype)
        torch.testing.assert_close(lp_norm(x, p), expected)
        torch.testing.assert_close(lp_norm(x, p, root=True), expected ** (1 / p))

    def test_root_2_is_the_euclidean_norm(self):
        x = _images()
        torch.testing.assert_close(lp_norm(x, 2, root=True), x.flatten(1).norm(dim=1))

    def test_center_number_and_per_channel(self):
        x = _images()
        torch.testing.assert_close(lp_norm(x, 2, center=0.5), (x - 0.5).pow(2).sum((1, 2, 3)))
        center = [0.1, -0.2, 0.3]
        expected = torch.zeros(2, dtype=x.dtype)
        for b in range(2):
            for c in range(3):
                expected[b] += (x[b, c] - center[c]).abs().pow(1.5).sum()
        torch.testing.assert_close(lp_norm(x, 1.5, center=center), expected)
        torch.testing.assert_close(LpNorm(p=1.5, center=center)(x), expected)

    def test_zero_at_the_center_with_finite_gradient(self):
        x = torch.full((2, 3, 4, 4), 0.5, requires_grad=True)
        value = lp_norm(x, 2, center=0.5, root=True)
        assert torch.equal(value, torch.zeros(2))
        (grad,) = torch.autograd.grad(value.sum(), x)
        assert torch.isfinite(grad).all()

    @pytest.mark.parametrize("p", [0.5, 0, float("inf"), float("nan"), "2", True])
    def test_exception_p(self, p):
        with pytest.raises(ValueError, match="p must be a finite number >= 1"):
            lp_norm(_images(), p)
        with pytest.raises(ValueError, match="p must be a finite number >= 1"):
            LpNorm(p=p)

    def test_exception_center(self):
        with pytest.raises(ValueError, match="center has 2 values, one per channel, but the images have shape"):
            lp_norm(_images(), center=[0.1, 0.2])
        with pytest.raises(ValueError, match="center must be a finite number or one per channel"):
            LpNorm(center=[[0.1]])


class TestBlurPenalty:
    @pytest.mark.parametrize("size, sigma", [(3, 1.0), (5, 0.7), (1, 1.0)])
    def test_normalized_blur_matches_reference(self, size, sigma):
        x = _images((1, 2, 4, 5))
        kernel = gaussian_kernel2d(size, sigma, dtype=torch.float64)
        torch.testing.assert_close(normalized_blur(x, size, sigma), blur_reference(x, kernel))

    @pytest.mark.parametrize("size, sigma", [(3, 1.0), (5, 2.0)])
    def test_value_matches_reference(self, size, sigma):
        x = _images((2, 3, 4, 5))
        blurred = blur_reference(x, gaussian_kernel2d(size, sigma, dtype=torch.float64))
        expected = 0.5 * (x - blurred).pow(2).sum((1, 2, 3))
        torch.testing.assert_close(blur_penalty(x, size, sigma), expected)
        torch.testing.assert_close(BlurPenalty(kernel_size=size, sigma=sigma)(x), expected)

    def test_gradient_is_x_minus_blur(self):
        """The blurred copy gets no gradient: d/dx = x - b(x), so a step of size k gives (1-k)x + k b(x)."""
        x = _images((2, 3, 4, 5)).requires_grad_(True)
        (grad,) = torch.autograd.grad(blur_penalty(x).sum(), x)
        blurred = blur_reference(x.detach(), gaussian_kernel2d(3, 1.0, dtype=torch.float64))
        torch.testing.assert_close(grad, x.detach() - blurred)
        k = 0.3
        torch.testing.assert_close(x.detach() - k * grad, (1 - k) * x.detach() + k * blurred)

    def test_descent_makes_the_image_smoother(self):
        x = _images((1, 1, 16, 16)).float()
        prior = BlurPenalty()
        y = x.clone().requires_grad_(True)
        opt = torch.optim.SGD([y], lr=0.5)
        for _ in range(10):
            opt.zero_grad()
            prior(y).sum().backward()
            opt.step()
        assert total_variation(y.detach()).item() < 0.5 * total_variation(x).item()

    def test_exception_kernel(self):
        with pytest.raises(ValueError, match="size must be a positive odd integer, got 4"):
            BlurPenalty(kernel_size=4)
