"""multi_scale_edge_energy and gaussian_kernel2d against an independent numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import inputopt.functional.edge_energy as edge_energy_module
from inputopt.functional import gaussian_kernel2d, multi_scale_edge_energy

# ----------------------------------------------------------------------------------------------------
# Reference: the formula of docs/feature_visualization.md written out in numpy, float64, one grey image at a time.
#   h(x) = sum_s || d^s(x) - g * d^s(x) ||^2,  g normalized Gaussian (zero padding, same size),
#   d = 2x2 average pooling with one pixel of zero padding on every side (zeros count in the mean),
#   scales while the smaller side is > 5; channels are separate images, summed per sample.
# ----------------------------------------------------------------------------------------------------


def ref_kernel(size: int, sigma: float) -> np.ndarray:
    half = (size - 1) / 2
    k = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            k[i, j] = math.exp(-((i - half) ** 2 + (j - half) ** 2) / (2 * sigma**2))
    return k / k.sum()


def ref_blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    r = kernel.shape[0] // 2
    padded = np.pad(image, r)  # zeros
    out = np.zeros_like(image)
    for a in range(kernel.shape[0]):
        for b in range(kernel.shape[1]):
            out += kernel[a, b] * padded[a:a + image.shape[0], b:b + image.shape[1]]
    return out


def ref_downscale(image: np.ndarray) -> np.ndarray:
    h, w = image.shape
    padded = np.pad(image, 1)  # zeros, counted in the mean
    oh, ow = h // 2 + 1, w // 2 + 1
    blocks = padded[: 2 * oh, : 2 * ow].reshape(oh, 2, ow, 2)
    return blocks.mean(axis=(1, 3))


def ref_terms(image: np.ndarray, size: int = 5, sigma: float = 1.0) -> tuple[list[float], list[tuple[int, int]]]:
    """Per-scale energies of one grey image, and the image size at each scale."""
    kernel = ref_kernel(size, sigma)
    terms, sides = [], []
    u = np.asarray(image, dtype=np.float64)
    while min(u.shape) > 5:
        detail = u - ref_blur(u, kernel)
        terms.append(float((detail**2).sum()))
        sides.append(u.shape)
        u = ref_downscale(u)
    return terms, sides


def ref_energy(x: torch.Tensor, size: int = 5, sigma: float = 1.0) -> torch.Tensor:
    x = x.detach().double().numpy()
    out = np.zeros(x.shape[0])
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[b] += sum(ref_terms(x[b, c], size, sigma)[0])
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------


class TestGaussianKernel2d:
    @pytest.mark.parametrize("size, sigma", [(5, 1.0), (3, 0.5), (7, 2.0), (1, 1.0)])
    def test_matches_formula(self, size, sigma):
        k = gaussian_kernel2d(size, sigma, dtype=torch.float64)
        assert k.shape == (size, size)
        assert k.dtype == torch.float64
        torch.testing.assert_close(k, torch.from_numpy(ref_kernel(size, sigma)), rtol=1e-12, atol=1e-15)

    def test_sums_to_one_and_symmetric(self):
        k = gaussian_kernel2d(5, 1.0)
        assert k.dtype == torch.float32
        assert abs(k.sum().item() - 1.0) < 1e-6
        torch.testing.assert_close(k, k.T)
        torch.testing.assert_close(k, k.flip(0))
        torch.testing.assert_close(k, k.flip(1))
        # the peak is at the centre and values decrease outwards
        assert k.argmax().item() == 12
        assert k[2, 2] > k[2, 3] > k[2, 4] > 0

    def test_default_is_5x5_sigma_1(self):
        torch.testing.assert_close(gaussian_kernel2d(), torch.from_numpy(ref_kernel(5, 1.0)).float())

    @pytest.mark.parametrize("size", [0, -1, 4, 6])
    def test_exception_size(self, size):
        with pytest.raises(ValueError, match=f"size must be a positive odd integer, got {size}"):
            gaussian_kernel2d(size, 1.0)

    @pytest.mark.parametrize("sigma", [0.0, -1.0])
    def test_exception_sigma(self, sigma):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            gaussian_kernel2d(5, sigma)


class TestMultiScaleEdgeEnergy:
    def test_smoke(self):
        out = multi_scale_edge_energy(torch.randn(2, 3, 16, 16))
        assert out.shape == (2,)
        assert out.dtype == torch.float32

    @pytest.mark.parametrize("shape", [(1, 1, 8, 8), (2, 3, 17, 23), (3, 1, 31, 12), (2, 3, 40, 40), (1, 2, 6, 9)])
    def test_matches_reference(self, shape):
        g = torch.Generator().manual_seed(sum(shape))
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        out = multi_scale_edge_energy(x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ref_energy(x), rtol=1e-10, atol=1e-10)
        # float32 input: same value to float32 precision
        out32 = multi_scale_edge_energy(x.float())
        assert out32.dtype == torch.float32
        torch.testing.assert_close(out32.double(), ref_energy(x), rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("size, sigma", [(3, 0.5), (7, 2.0)])
    def test_matches_reference_other_kernels(self, size, sigma):
        x = torch.randn(2, 2, 19, 14, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        torch.testing.assert_close(multi_scale_edge_energy(x, size, sigma), ref_energy(x, size, sigma),
                                   rtol=1e-10, atol=1e-10)

    def test_channels_are_separate_images(self):
        x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
        per_channel = sum(multi_scale_edge_energy(x[:, c:c + 1]) for c in range(3))
        torch.testing.assert_close(multi_scale_edge_energy(x), per_channel)

    def test_rows_independent(self):
        x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
        full = multi_scale_edge_energy(x)
        for i in range(3):
            torch.testing.assert_close(full[i:i + 1], multi_scale_edge_energy(x[i:i + 1]))

    def test_nonnegative(self):
        x = torch.randn(8, 3, 16, 16) * 5 + 2
        assert (multi_scale_edge_energy(x) >= 0).all()

    def test_zero_input(self):
        out = multi_scale_edge_energy(torch.zeros(2, 3, 20, 20))
        assert torch.equal(out, torch.zeros(2))

    def test_constant_image_only_border_energy(self):
        # zero padding makes the border of a constant image an edge: the energy is positive, not zero,
        # and it is exactly what the reference gives
        x = torch.full((1, 1, 16, 16), 3.0, dtype=torch.float64)
        out = multi_scale_edge_energy(x)
        assert out.item() > 0
        torch.testing.assert_close(out, ref_energy(x))

    @pytest.mark.parametrize("a", [2.0, -3.0, 0.1])
    def test_quadratic_homogeneity(self, a):
        x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
        torch.testing.assert_close(multi_scale_edge_energy(a * x), a**2 * multi_scale_edge_energy(x))

    def test_smooth_lower_than_noise(self):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(1, 3, 64, 64, generator=g)
        yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
        smooth = torch.sin(2 * math.pi * xx / 64) * torch.cos(2 * math.pi * yy / 64)
        smooth = smooth.expand(1, 3, 64, 64)
        smooth = (smooth - smooth.mean()) / smooth.std() * noise.std() + noise.mean()
        assert multi_scale_edge_energy(smooth).item() < 0.2 * multi_scale_edge_energy(noise).item()

    def test_gradcheck(self):
        x = torch.randn(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(multi_scale_edge_energy, (x,))

    def test_gradient_matches_reference(self):
        # h is quadratic, so its gradient at x is 2·A^T A x; checked via the directional derivative
        x = torch.randn(1, 2, 10, 13, dtype=torch.float64, requires_grad=True)
        v = torch.randn_like(x)
        (grad,) = torch.autograd.grad(multi_scale_edge_energy(x).sum(), x)
        eps = 1e-4
        numeric = (ref_energy(x + eps * v) - ref_energy(x - eps * v)) / (2 * eps)
        torch.testing.assert_close((grad * v).sum(), numeric.sum(), rtol=1e-6, atol=1e-6)

    @pytest.mark.parametrize("height, width, sides", [
        (224, 224, [224, 113, 57, 29, 15, 8]),
        (6, 6, [6]),
        (11, 11, [11, 6]),
        (12, 100, [12, 7]),
        (32, 32, [32, 17, 9]),
    ])
    def test_number_of_scales(self, monkeypatch, height, width, sides):
        x = torch.randn(1, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        terms, ref_sides = ref_terms(x[0, 0].numpy())
        assert [min(s) for s in ref_sides] == sides

        # count the blur convolutions the implementation runs, and the sizes it runs them on
        seen = []
        real_conv2d = F.conv2d

        class CountingF:
            def __getattr__(self, name):
                return getattr(F, name)

            @staticmethod
            def conv2d(u, *args, **kwargs):
                seen.append(tuple(u.shape[-2:]))
                return real_conv2d(u, *args, **kwargs)

        monkeypatch.setattr(edge_energy_module, "F", CountingF())
        out = multi_scale_edge_energy(x)
        assert seen == ref_sides
        # and the value is the sum of exactly these terms, the coarsest one included
        torch.testing.assert_close(out.item(), sum(terms), rtol=1e-12, atol=0)
        assert terms[-1] > 0
        torch.testing.assert_close(out.item() - sum(terms[:-1]), terms[-1], rtol=1e-6, atol=0)

    def test_autocast_bfloat16(self):
        x = torch.randn(2, 3, 24, 24)
        expected = multi_scale_edge_energy(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = multi_scale_edge_energy(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_half_input_computed_in_float32(self, dtype):
        x = torch.randn(2, 3, 24, 24).to(dtype)
        out = multi_scale_edge_energy(x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, multi_scale_edge_energy(x.float()), rtol=0, atol=0)

    @pytest.mark.parametrize("height, width", [(5, 5), (5, 40), (40, 4), (1, 1)])
    def test_exception_too_small(self, height, width):
        with pytest.raises(ValueError, match=f"{height}x{width}"):
            multi_scale_edge_energy(torch.randn(1, 3, height, width))

    @pytest.mark.parametrize("shape", [(3, 16, 16), (16, 16), (1, 1, 3, 16, 16)])
    def test_exception_rank(self, shape):
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            multi_scale_edge_energy(torch.randn(shape))


def test_mean_reduction_is_the_sum_over_the_number_of_values_and_serves_every_size():
    """One weight for every size: a texture on 4x the pixels (tiled 2x2) has about 4x the summed energy
    and about the same mean; 'mean' is the sum over C*H*W exactly."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(multi_scale_edge_energy(x, reduction="mean"), multi_scale_edge_energy(x) / (3 * 32 * 32))
    tiled = x.repeat(1, 1, 2, 2)
    sum_ratio = multi_scale_edge_energy(tiled) / multi_scale_edge_energy(x)
    mean_ratio = multi_scale_edge_energy(tiled, reduction="mean") / multi_scale_edge_energy(x, reduction="mean")
    assert torch.allclose(sum_ratio, torch.full((2,), 4.0), rtol=0.05), sum_ratio
    assert torch.allclose(mean_ratio, torch.ones(2), rtol=0.05), mean_ratio
    with pytest.raises(ValueError, match="reduction must be 'sum' or 'mean'"):
        multi_scale_edge_energy(x, reduction="max")
