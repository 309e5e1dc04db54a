"""The colour matrix: its defining property, and the shipped default re-estimated from the photographs."""

from __future__ import annotations

import pytest
import torch

from inputopt.functional.color import DEFAULT_COLOR_MATRIX, estimate_color_matrix, natural_photographs


def test_matrix_is_the_normalized_square_root_of_the_covariance():
    mixing = torch.tensor([[1.0, 0.2, 0.0], [0.5, 0.5, 0.1], [0.3, -0.4, 0.2]])
    pixels = mixing @ torch.randn(3, 20000, generator=torch.Generator().manual_seed(0))
    images = pixels.T.reshape(50, 20, 20, 3).permute(0, 3, 1, 2)
    m = estimate_color_matrix(images)
    covariance = pixels.double().cov().float()
    torch.testing.assert_close(m @ m.T, covariance / torch.linalg.eigvalsh(covariance).max(), rtol=1e-3, atol=1e-4)
    assert torch.linalg.norm(m, dim=0).max() == pytest.approx(1.0, abs=1e-5)
    assert (m.sum(0) >= 0).all()


def test_batches_of_a_loader_give_the_matrix_of_the_whole_set():
    images = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(estimate_color_matrix(images.split(3)), estimate_color_matrix(images))


def test_default_is_reestimated_from_the_shipped_photographs():
    estimated = estimate_color_matrix(natural_photographs())
    torch.testing.assert_close(estimated, torch.tensor(DEFAULT_COLOR_MATRIX), rtol=0, atol=1e-4)


def test_exception_not_rgb():
    with pytest.raises(ValueError, match="RGB images"):
        estimate_color_matrix(torch.rand(2, 1, 4, 4))
