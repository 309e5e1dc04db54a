"""Colour decorrelation: the square root of the colour covariance of natural images."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["DEFAULT_COLOR_MATRIX", "estimate_color_matrix", "natural_photographs"]

#: The default colour matrix ``M`` (RGB × decorrelated channels): images are ``M @ z`` for decorrelated
#: channels ``z``. Estimated by :func:`estimate_color_matrix` from the six colour photographs that ship
#: with scikit-image and scikit-learn (astronaut, coffee, chelsea, rocket, china, flower; pixel values
#: in [0, 1]); ``tests/functional/test_color.py`` re-estimates it. The first column is luminance.
DEFAULT_COLOR_MATRIX = (
    (0.6481, -0.3027, 0.0280),
    (0.5598, 0.0934, -0.0874),
    (0.5163, 0.2787, 0.0597),
)


def estimate_color_matrix(images: Tensor | Iterable[Tensor]) -> Tensor:
    r"""The colour matrix of a set of RGB images: :math:`M = U \sqrt{S / s_{max}}` for the covariance
    :math:`U S U^T` of their pixels' colours.

    ``M @ z`` turns uncorrelated, unit-variance channels ``z`` into colours correlated like those of the
    images, scaled so the strongest direction (luminance, for natural images) has norm 1. Columns are
    sorted by variance, each signed so that its entries sum to a non-negative number.

    Args:
        images: a ``(B, 3, H, W)`` tensor, or an iterable of ``(3, H, W)`` / ``(B, 3, H, W)`` tensors
            (e.g. a DataLoader's image batches), values in the range the parameterization works in.

    Returns:
        A ``(3, 3)`` float32 tensor.

    Example:
        >>> grey = torch.rand(1, 1, 8, 8).expand(1, 3, 8, 8)
        >>> m = estimate_color_matrix(grey)
        >>> torch.allclose(m[:, 0], torch.full((3,), 3 ** -0.5), atol=1e-4)  # all variance is luminance
        True
    """
    batches = [images] if isinstance(images, Tensor) else images
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    count = 0
    for batch in batches:
        batch = batch if batch.ndim == 4 else batch.unsqueeze(0)
        if batch.shape[1] != 3:
            raise ValueError(f"colour matrices are for RGB images, (B, 3, H, W); got shape {tuple(batch.shape)}")
        pixels = batch.detach().to(torch.float64).permute(0, 2, 3, 1).reshape(-1, 3)
        total += pixels.sum(0)
        outer += pixels.T @ pixels
        count += pixels.shape[0]
    if count < 2:
        raise ValueError("estimate_color_matrix needs at least two pixels")
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = eigenvalues.argsort(descending=True)
    eigenvalues, eigenvectors = eigenvalues[order].clamp_min(0), eigenvectors[:, order]
    signs = torch.where(eigenvectors.sum(0) < 0, -1.0, 1.0).to(torch.float64)
    matrix = eigenvectors * signs * (eigenvalues / eigenvalues[0]).sqrt()
    return matrix.float()


def natural_photographs() -> list[Tensor]:
    """The six colour photographs behind :data:`DEFAULT_COLOR_MATRIX`, as ``(3, H, W)`` tensors in [0, 1].

    Needs scikit-image and scikit-learn (``pip install -e ".[dev]"``); they ship the files, no download.
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    arrays = [getattr(skimage.data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")]
    arrays += list(load_sample_images().images)
    return [torch.from_numpy(a.copy()).permute(2, 0, 1).float().div(255) for a in arrays]
