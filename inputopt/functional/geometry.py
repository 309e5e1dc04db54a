"""Batched affine resampling in pixel coordinates: one ``affine_grid`` / ``grid_sample`` for a whole batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["affine_sample", "rotation_matrices", "scale_matrices", "translation_matrices"]


def _eye(n: int, dtype=torch.float64, device=None) -> Tensor:
    return torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3).clone()


def translation_matrices(dx: Tensor, dy: Tensor) -> Tensor:
    """``(B, 3, 3)`` matrices that move each image's content by ``(dx, dy)`` pixels (right, down)."""
    m = _eye(dx.shape[0], dx.dtype, dx.device)
    m[:, 0, 2], m[:, 1, 2] = -dx, -dy
    return m


def scale_matrices(factor: Tensor) -> Tensor:
    """``(B, 3, 3)`` matrices that magnify each image's content by ``factor`` about its centre."""
    m = _eye(factor.shape[0], factor.dtype, factor.device)
    m[:, 0, 0], m[:, 1, 1] = 1 / factor, 1 / factor
    return m


def rotation_matrices(degrees: Tensor) -> Tensor:
    """``(B, 3, 3)`` matrices that rotate each image's content by ``degrees`` about its centre
    (positive: counter-clockwise as displayed, rows growing downwards)."""
    angle = degrees * (math.pi / 180)
    m = _eye(degrees.shape[0], degrees.dtype, degrees.device)
    cos, sin = angle.cos(), angle.sin()
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    return m


def affine_sample(x: Tensor, matrices: Tensor, padding_mode: str = "reflection",
                  size: tuple[int, int] | None = None) -> Tensor:
    """Resample every image of ``x`` with its own affine map, in one ``grid_sample`` call.

    ``matrices[i]`` maps a pixel position of the output (in pixels, origin at the image's centre, ``x``
    to the right and ``y`` down) to the position in ``x[i]`` it samples, bilinearly. Compose maps by
    multiplying them: ``A @ B`` applies ``A``'s transform first. Differentiable in ``x``.

    With ``size=(h, w)`` the output has that size and shows the same field of view as an output of
    ``x``'s own size would (the whole result, resized to ``(h, w)`` in the same resampling): how padded
    images come back to the configured size without a second interpolation.

    Args:
        x: images ``(B, C, H, W)``.
        matrices: ``(B, 3, 3)`` (or ``(B, 2, 3)``) maps from output to input pixel positions.
        padding_mode: what is sampled outside the image (``"reflection"``, ``"border"``, ``"zeros"``).
        size: the output's ``(h, w)`` (default: ``x``'s ``(H, W)``).

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> shifted = affine_sample(x, translation_matrices(torch.tensor([1.0]), torch.tensor([0.0])), "zeros")
        >>> shifted[0, 0, 0].tolist()  # the content moved one pixel to the right
        [0.0, 0.0, 1.0, 2.0]
    """
    batch, channels, height, width = x.shape
    # the output's normalized coordinates span the input's field of view whatever its size: the same
    # to_pixels as for an output of the input's size
    out_height, out_width = (height, width) if size is None else size
    to_unit = torch.diag(torch.tensor([2 / width, 2 / height, 1.0], dtype=matrices.dtype, device=matrices.device))
    to_pixels = torch.diag(torch.tensor([width / 2, height / 2, 1.0], dtype=matrices.dtype, device=matrices.device))
    square = matrices if matrices.shape[1] == 3 else torch.cat([matrices, _eye(batch, matrices.dtype,
                                                                             matrices.device)[:, 2:]], 1)
    theta = (to_unit @ square @ to_pixels)[:, :2].to(x.dtype)
    grid = F.affine_grid(theta, [batch, channels, out_height, out_width], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
