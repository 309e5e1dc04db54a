"""Pasting a patch into a batch of images, each row at its own position, scale and rotation (one ``grid_sample``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["disc_mask", "paste_patch", "patch_placements"]


def disc_mask(height: int, width: int, device=None) -> Tensor:
    """A ``(1, 1, height, width)`` mask: 1 inside the ellipse inscribed in the rectangle, 0 outside
    (pixel centres; a disc for a square patch).

    Example:
        >>> disc_mask(4, 4)[0, 0]
        tensor([[0., 1., 1., 0.],
                [1., 1., 1., 1.],
                [1., 1., 1., 1.],
                [0., 1., 1., 0.]])
    """
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 - 1
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 - 1
    return ((y[:, None] ** 2 + x[None, :] ** 2) <= 1).float()[None, None]


def patch_placements(u: Tensor, image_size: tuple[int, int], patch_size: tuple[int, int],
                     scale: tuple[float, float] = (1.0, 1.0), degrees: tuple[float, float] = (0.0, 0.0)) -> Tensor:
    """Per-row placements ``(B, 4)``: centre ``x``, centre ``y`` (pixels from the image's top-left corner),
    scale and angle (degrees), from uniform numbers ``u`` ``(B, 4)`` in [0, 1).

    The scale and the angle are uniform in their ranges; the centre is uniform over the positions where the
    rotated, scaled patch's bounding box lies inside the image (the image's centre when it does not fit).

    Example:
        >>> patch_placements(torch.tensor([[0.0, 1.0, 0.5, 0.5]]), (32, 32), (8, 8)).tolist()
        [[4.0, 28.0, 1.0, 0.0]]
    """
    u = u.to(torch.float64)
    s = scale[0] + u[:, 2] * (scale[1] - scale[0])
    angle = degrees[0] + u[:, 3] * (degrees[1] - degrees[0])
    rad = angle * (math.pi / 180)
    ph, pw = patch_size
    half_w = 0.5 * s * (pw * rad.cos().abs() + ph * rad.sin().abs())  # half the rotated bounding box
    half_h = 0.5 * s * (pw * rad.sin().abs() + ph * rad.cos().abs())
    height, width = image_size
    low_x, high_x = half_w, (width - half_w)
    low_y, high_y = half_h, (height - half_h)
    cx = torch.where(high_x >= low_x, low_x + u[:, 0] * (high_x - low_x), torch.full_like(low_x, width / 2))
    cy = torch.where(high_y >= low_y, low_y + u[:, 1] * (high_y - low_y), torch.full_like(low_y, height / 2))
    return torch.stack([cx, cy, s, angle], 1)


def paste_patch(images: Tensor, patch: Tensor, placements: Tensor, mask: Tensor | None = None) -> Tensor:
    """Paste ``patch`` into every image at its row's placement: ``x' = x·(1 − m) + p·m`` with the patch and
    its mask resampled bilinearly (soft edges), differentiable in the patch and the images.

    Args:
        images: ``(B, C, H, W)``.
        patch: ``(1, C, h, w)`` (one patch for all rows) or ``(B, C, h, w)``.
        placements: ``(B, 4)``: centre x, centre y (pixels), scale, angle in degrees (counter-clockwise as
            displayed), e.g. from :func:`patch_placements`.
        mask: ``(1, 1, h, w)`` or ``(B, 1, h, w)`` in [0, 1], the patch's shape (default: the whole
            rectangle; :func:`disc_mask` for a circular patch).

    Example:
        >>> images = torch.zeros(2, 3, 8, 8)
        >>> out = paste_patch(images, torch.ones(1, 3, 2, 2), torch.tensor([[1.0, 1.0, 1.0, 0.0], [6.0, 6.0, 1.0, 0.0]]))
        >>> out[0, 0, :2, :2].tolist(), out[1, 0, 5:7, 5:7].round(decimals=4).tolist(), out.sum().round().item()
        ([[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], 24.0)
    """
    batch, channels, height, width = images.shape
    if patch.ndim != 4 or patch.shape[1] != channels or patch.shape[0] not in (1, batch):
        raise ValueError(f"patch must be (1, {channels}, h, w) or ({batch}, {channels}, h, w) for images "
                         f"{tuple(images.shape)}, got {tuple(patch.shape)}")
    if placements.shape != (batch, 4):
        raise ValueError(f"placements must be ({batch}, 4) (x, y, scale, degrees per row), got {tuple(placements.shape)}")
    ph, pw = patch.shape[-2:]
    if mask is None:
        mask = torch.ones(1, 1, ph, pw, device=patch.device, dtype=patch.dtype)
    p = placements.to(torch.float64)
    cx, cy, s, rad = p[:, 0], p[:, 1], p[:, 2], -p[:, 3] * (math.pi / 180)  # rows grow downwards
    # output pixel centre (i, j) -> its position relative to the patch centre, rotated back and unscaled,
    # in the patch's normalized coordinates [-1, 1] (align_corners=False)
    cos, sin = rad.cos(), rad.sin()
    theta = torch.zeros(batch, 2, 3, dtype=torch.float64, device=images.device)
    # u = (x - cx), v = (y - cy) in pixels, with x = (gx + 1) * W / 2 for the output grid gx in [-1, 1]
    # patch coordinates: px = ( cos·u + sin·v) / s, py = (-sin·u + cos·v) / s, normalized by pw/2, ph/2
    ax, ay = width / 2, height / 2
    theta[:, 0, 0] = cos * ax / (s * pw / 2)
    theta[:, 0, 1] = sin * ay / (s * pw / 2)
    theta[:, 0, 2] = (cos * (ax - cx) + sin * (ay - cy)) / (s * pw / 2)
    theta[:, 1, 0] = -sin * ax / (s * ph / 2)
    theta[:, 1, 1] = cos * ay / (s * ph / 2)
    theta[:, 1, 2] = (-sin * (ax - cx) + cos * (ay - cy)) / (s * ph / 2)
    grid = F.affine_grid(theta.to(images.dtype), [batch, channels, height, width], align_corners=False)
    mask = mask.to(patch.dtype)
    both = torch.cat([(patch * mask).expand(batch, -1, -1, -1), mask.expand(batch, -1, -1, -1)], 1)
    sampled = F.grid_sample(both.to(images.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    colour, alpha = sampled[:, :channels], sampled[:, channels:]
    return images * (1 - alpha) + colour
