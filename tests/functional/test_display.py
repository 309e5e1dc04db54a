"""to_display: the reference display normalization and clamping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inputopt.functional import to_display


def ref_std_display(x: torch.Tensor) -> torch.Tensor:
    """0.5 + 0.1·(x − mean)/std per image (numpy, float64, sample std), clamped to [0, 1]."""
    a = x.detach().double().numpy()
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        image = a[i]
        out[i] = np.clip(0.5 + 0.1 * (image - image.mean()) / image.std(ddof=1), 0.0, 1.0)
    return torch.from_numpy(out)


class TestToDisplay:
    def test_smoke(self):
        y = to_display(torch.randn(2, 3, 8, 8))
        assert y.shape == (2, 3, 8, 8)
        assert y.dtype == torch.float32
        assert 0 <= y.min() and y.max() <= 1

    @pytest.mark.parametrize("shape", [(1, 3, 8, 8), (3, 1, 5, 7), (2, 3, 16, 9)])
    def test_std_matches_reference(self, shape):
        g = torch.Generator().manual_seed(0)
        # rows with very different scales and offsets: normalization is per image
        x = torch.randn(shape, generator=g) * torch.tensor([0.01, 5.0, 100.0])[: shape[0]].view(-1, 1, 1, 1)
        x = x + torch.tensor([3.0, -1.0, 0.0])[: shape[0]].view(-1, 1, 1, 1)
        y = to_display(x, "std")
        torch.testing.assert_close(y.double(), ref_std_display(x), rtol=0, atol=1e-5)

    def test_std_clamps_outliers(self):
        x = torch.randn(2, 3, 8, 8) * 0.1
        x[0, 1, 2, 3] = 100.0  # far more than 5 standard deviations above the mean: clamped to 1
        x[1, 0, 0, 0] = -100.0  # and below: clamped to 0
        y = to_display(x)
        assert y[0, 1, 2, 3] == 1.0
        assert y[1, 0, 0, 0] == 0.0
        torch.testing.assert_close(y.double(), ref_std_display(x), rtol=0, atol=1e-5)

    def test_std_per_image(self):
        x = torch.randn(3, 3, 8, 8)
        y = to_display(x)
        x2 = x.clone()
        x2[1] = x2[1] * 50 + 7
        y2 = to_display(x2)
        torch.testing.assert_close(y2[[0, 2]], y[[0, 2]], rtol=0, atol=0)
        # an affine change of one image with a positive factor does not change how it looks
        torch.testing.assert_close(y2[1], y[1], rtol=0, atol=1e-5)

    def test_std_mean_is_half(self):
        x = torch.randn(2, 3, 16, 16) * 0.01  # small values: nothing clamped
        y = to_display(x)
        torch.testing.assert_close(y.flatten(1).mean(1), torch.full((2,), 0.5), rtol=0, atol=1e-5)
        torch.testing.assert_close(y.flatten(1).std(1), torch.full((2,), 0.1), rtol=1e-4, atol=0)

    def test_clamp(self):
        x = torch.tensor([-1.0, 0.0, 0.25, 1.0, 2.5]).view(1, 1, 1, 5)
        y = to_display(x, "clamp")
        assert torch.equal(y, torch.tensor([0.0, 0.0, 0.25, 1.0, 1.0]).view(1, 1, 1, 5))

    @pytest.mark.parametrize("mode", ["std", "clamp"])
    def test_constant_image(self, mode):
        x = torch.full((2, 3, 4, 4), 0.3)
        y = to_display(x, mode)
        assert not y.isnan().any()
        expected = 0.5 if mode == "std" else 0.3
        torch.testing.assert_close(y, torch.full_like(y, expected))

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
    def test_dtype(self, dtype):
        x = torch.randn(2, 3, 8, 8).to(dtype)
        y = to_display(x)
        assert y.dtype == torch.float32
        torch.testing.assert_close(y.double(), ref_std_display(x.float()), rtol=0, atol=1e-5)

    def test_detached(self):
        x = torch.randn(1, 3, 8, 8, requires_grad=True)
        assert not to_display(x).requires_grad

    def test_exception_mode(self):
        with pytest.raises(ValueError, match="'minmax'"):
            to_display(torch.randn(1, 3, 4, 4), "minmax")

    @pytest.mark.parametrize("shape", [(3, 4, 4), (1, 1, 3, 4, 4)])
    def test_exception_rank(self, shape):
        with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
            to_display(torch.randn(shape))
