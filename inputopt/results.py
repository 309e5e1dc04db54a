"""Write optimized inputs to disk as PNG images, with torchvision's utilities."""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid, save_image

from inputopt.functional.display import DisplayMode, to_display

__all__ = ["adversarial_grid", "file_name", "image_grid", "save_grid", "save_images"]


#: Characters a file name never gets from an image's name: path separators, those Windows refuses, control characters.
_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')
_MAX_NAME = 150


def file_name(name: str) -> str:
    """The file name (without extension) of an image's name, safe to join to its folder: separators and other
    characters a file name cannot hold become ``_``, ``.``/``..`` get a ``_`` in front, and a very long name is
    cut and given a hash of the whole. Layer names come from the network, so a layer named ``/tmp/x`` or
    ``sub/dir`` stays a file inside the results folder.

    Example:
        >>> file_name("features.4-3"), file_name("/tmp/x/ESC-0"), file_name("sub/dir-1"), file_name("..")
        ('features.4-3', '_tmp_x_ESC-0', 'sub_dir-1', '_..')
    """
    safe = _UNSAFE.sub("_", str(name))
    if safe.strip(".") == "":
        safe = "_" + safe
    if len(safe) > _MAX_NAME:
        safe = safe[:_MAX_NAME - 17] + "-" + hashlib.sha256(str(name).encode()).hexdigest()[:16]
    return safe


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
    """Save each image of ``x`` as ``directory/<name>.png`` (the name made safe by :func:`file_name`: every file
    stays inside ``directory``); returns the paths.

    Example:
        >>> import torch, tempfile
        >>> paths = save_images(torch.randn(2, 3, 8, 8), tempfile.mkdtemp(), ["a", "b"])
        >>> [p.name for p in paths]
        ['a.png', 'b.png']
    """
    if len(names) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(names)} names")
    files = [file_name(n) for n in names]
    clashes = sorted({f for f in files if files.count(f) > 1})
    if clashes:
        raise ValueError(f"the image names {list(names)} give the same file name twice ({clashes}), once made safe "
                         f"for the file system; name the layers apart")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = to_display(x, display)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    paths = [directory / f"{name}.png" for name in files]
    for image, path in zip(images, paths):
        save_image(image, path)
    return paths


def adversarial_grid(clean: Tensor, adversarial: Tensor, scale: int = 1) -> Tensor:
    """One picture of clean images, their adversarial versions and the magnified perturbations.

    Row ``i``: the clean image, then for every ε the adversarial image and its perturbation ``δ`` shown as
    ``0.5 + δ / (2·max|δ|)`` (grey: unchanged; the largest change is black or white).

    Args:
        clean: ``(N, C, H, W)`` in [0, 1].
        adversarial: ``(N, E, C, H, W)``: one image per ε.
        scale: integer upscaling (nearest neighbour), for small images.

    Example:
        >>> import torch
        >>> adversarial_grid(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)).shape
        torch.Size([3, 22, 72])
    """
    if adversarial.ndim != 5 or adversarial.shape[0] != clean.shape[0] or adversarial.shape[2:] != clean.shape[1:]:
        raise ValueError(f"adversarial must be (N, E, C, H, W) for clean images {tuple(clean.shape)}, "
                         f"got {tuple(adversarial.shape)}")
    delta = adversarial - clean.unsqueeze(1)
    peak = delta.flatten(2).abs().amax(2).clamp_min(1e-12).view(*delta.shape[:2], 1, 1, 1)
    tiles = [clean.unsqueeze(1)]
    for e in range(adversarial.shape[1]):
        tiles += [adversarial[:, e:e + 1], 0.5 + delta[:, e:e + 1] / (2 * peak[:, e:e + 1])]
    rows = torch.cat(tiles, 1)  # (N, 1 + 2E, C, H, W)
    images = rows.flatten(0, 1).clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=rows.shape[1], padding=2, pad_value=1.0)
