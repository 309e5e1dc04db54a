"""Write optimized inputs to disk as PNG images, with torchvision's utilities."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid, save_image

from inputopt.functional.display import DisplayMode, to_display

__all__ = ["image_grid", "save_grid", "save_images"]


def image_grid(x: Tensor, display: DisplayMode = "std", nrow: int | None = None, scale: int = 1) -> Tensor:
    """One ``(3, H', W')`` image showing every image of ``x`` (display-normalized, white padding).

    Args:
        x: images ``(B, C, H, W)``.
        display: ``"std"`` (``0.5 + 0.1·(x − mean)/std``) or ``"clamp"`` (to [0, 1]).
        nrow: images per row (default: a square-ish grid).
        scale: integer upscaling (nearest neighbour), for small images.

    Example:
        >>> import torch
        >>> image_grid(torch.randn(4, 1, 8, 8)).shape
        torch.Size([3, 22, 22])
    """
    images = to_display(x, display)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    return make_grid(images, nrow=nrow, padding=2, pad_value=1.0)


def save_grid(x: Tensor, path: str | os.PathLike, display: DisplayMode = "std", nrow: int | None = None,
              scale: int = 1) -> Path:
    """Save all images of ``x`` as one PNG grid; returns the path. See :func:`image_grid`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(image_grid(x, display, nrow, scale), path)
    return path


def save_images(x: Tensor, directory: str | os.PathLike, names: Sequence[str], display: DisplayMode = "std",
                scale: int = 1) -> list[Path]:
    """Save each image of ``x`` as ``directory/<name>.png``; returns the paths.

    Example:
        >>> import torch, tempfile
        >>> paths = save_images(torch.randn(2, 3, 8, 8), tempfile.mkdtemp(), ["a", "b"])
        >>> [p.name for p in paths]
        ['a.png', 'b.png']
    """
    if len(names) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(names)} names")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = to_display(x, display)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    paths = [directory / f"{name}.png" for name in names]
    for image, path in zip(images, paths):
        save_image(image, path)
    return paths
