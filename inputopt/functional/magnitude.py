"""Fourier magnitude spectra of natural images: MACO's fixed magnitude, estimated, shipped and resized."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_MAGNITUDE_FILE", "default_magnitude", "estimate_magnitude", "resize_magnitude"]

#: The shipped default magnitudes, ``{"rgb": (3, 256, 129), "gray": (1, 256, 129)}`` float16: the mean
#: ``|rfft2|`` (orthonormal) of the six photographs of
#: :func:`~inputopt.functional.color.natural_photographs` (pixel values in [0, 1]), each resized (shorter
#: side) and centre-cropped to 256 × 256, and of their grayscale versions (ITU-R 601 luma). Remade by
#: ``{"rgb": estimate_magnitude(photos, 256), "gray": estimate_magnitude(photos, 256, channels=1)}``
#: (``tests/functional/test_magnitude.py`` re-estimates it). Loading the photographs takes seconds and
#: needs scikit-image and scikit-learn, hence the file.
DEFAULT_MAGNITUDE_FILE = Path(__file__).with_name("natural_magnitude.pt")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return pair


def _folder_images(folder: Path, channels: int) -> Iterable[Tensor]:
    from torchvision.io import ImageReadMode, decode_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"estimate_magnitude: no image files ({', '.join(_IMAGE_SUFFIXES)}) in {str(folder)!r}")
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    for path in files:
        yield decode_image(str(path), mode=mode).float().div(255)


def _batches(images: Tensor | Iterable | str | os.PathLike, channels: int | None) -> Iterable[Tensor]:
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"estimate_magnitude: no folder {str(folder)!r}")
        return _folder_images(folder, channels or 3)
    if isinstance(images, Tensor):
        return [images]
    # a DataLoader's batches may be (images, labels) pairs
    return (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in images)


def estimate_magnitude(images: Tensor | Iterable | str | os.PathLike, size: int | Sequence[int],
                       channels: int | None = None) -> Tensor:
    r"""The mean magnitude of the images' 2-D real FFT, per channel: :math:`\frac1N\sum_n |\mathrm{rfft2}(x_n)|`.

    Every image is resized (shorter side, antialiased) and centre-cropped to ``size`` first, unless it
    already has that size; the FFT is orthonormal (``norm="ortho"``).

    Args:
        images: a ``(B, C, H, W)`` tensor; an iterable of ``(C, H, W)`` / ``(B, C, H, W)`` tensors or of
            ``(images, labels)`` batches (a DataLoader); or a folder of image files (read as RGB, or
            grayscale when ``channels=1``).
        size: the image size ``(H, W)`` (or one int for a square) the spectrum is for.
        channels: convert RGB images to this many channels (1: grayscale); ``None`` keeps them.

    Returns:
        A ``(C, H, W // 2 + 1)`` float32 tensor, the ``rfft2`` layout.

    Example:
        >>> images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> m = estimate_magnitude(images, 8)
        >>> m.shape, torch.allclose(m[0, 0, 0], images.mean((1, 2, 3)).mean() * 8)  # DC: mean · √(H·W)
        (torch.Size([1, 8, 5]), True)
    """
    from torchvision.transforms.v2 import functional as TF  # torchvision only when estimating
    height, width = _size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    total: Tensor | None = None
    count = 0
    for batch in _batches(images, channels):
        batch = batch if batch.ndim == 4 else batch.unsqueeze(0)
        if batch.ndim != 4:
            raise ValueError(f"images must be (C, H, W) or (B, C, H, W) tensors, got shape {tuple(batch.shape)}")
        batch = batch.detach().float()
        if channels is not None and batch.shape[1] != channels:
            if (batch.shape[1], channels) != (3, 1):
                raise ValueError(f"cannot convert {batch.shape[1]}-channel images to {channels} channel(s)")
            batch = TF.rgb_to_grayscale(batch)
        if batch.shape[-2:] != (height, width):
            batch = TF.resize(batch, min(height, width), antialias=True)
            batch = TF.center_crop(batch, [height, width])
        magnitude = torch.fft.rfft2(batch.double(), norm="ortho").abs().sum(0)
        if total is not None and total.shape != magnitude.shape:
            raise ValueError(f"images with {magnitude.shape[0]} channel(s) after {total.shape[0]}; give channels=")
        total = magnitude if total is None else total + magnitude
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("estimate_magnitude needs at least one image")
    return (total / count).float()


def resize_magnitude(magnitude: Tensor, size: int | Sequence[int], reference_width: int | None = None) -> Tensor:
    r"""A ``(C, h, w // 2 + 1)`` magnitude for ``(h, w)`` images, from one estimated at another size.

    The log-magnitude is interpolated bilinearly at the same frequencies in cycles per pixel (the
    frequency grid ``fftfreq(h) × rfftfreq(w)`` looked up in the reference's centred grid): the spectrum
    of an ``h × w`` crop of the reference images at their resolution. With an orthonormal FFT that
    spectrum does not depend on the size, except the constant term, which is :math:`\text{mean}\sqrt{hw}`
    and is scaled so that the images' mean stays the same. A magnitude already of the asked size is
    returned as it is.

    Args:
        magnitude: ``(C, H, W // 2 + 1)``, e.g. from :func:`estimate_magnitude`.
        size: the new image size ``(h, w)`` (or one int).
        reference_width: ``W`` (default ``2 · (W // 2)``, an even width).

    Example:
        >>> m = resize_magnitude(default_magnitude(1), 32)
        >>> m.shape, bool(m[0, 0, 1] > m[0, 0, 8] > m[0, 0, 16])  # energy falls off with frequency
        (torch.Size([1, 32, 17]), True)
    """
    if magnitude.ndim != 3:
        raise ValueError(f"magnitude must be (C, H, W // 2 + 1), got shape {tuple(magnitude.shape)}")
    height, width = _size(size)
    channels, ref_height, ref_columns = magnitude.shape
    ref_width = 2 * (ref_columns - 1) if reference_width is None else reference_width
    if ref_width // 2 + 1 != ref_columns:
        raise ValueError(f"reference_width {ref_width} does not match {ref_columns} rfft2 columns")
    if (ref_height, ref_width // 2 + 1) == (height, width // 2 + 1):
        return magnitude.float().clone()
    log = magnitude.double().clamp_min(1e-12).log()
    # the constant term is mean·√(HW), not a spectral density: keep it out of the interpolation
    log[:, 0, 0] = (log[:, 1, 0] + log[:, -1, 0] + log[:, 0, 1]) / 3
    centred = torch.fft.fftshift(log, dim=-2)  # rows from the most negative frequency up
    fy = torch.fft.fftfreq(height, dtype=torch.float64) * ref_height + ref_height // 2
    fx = torch.fft.rfftfreq(width, dtype=torch.float64) * ref_width
    gy = (fy / max(ref_height - 1, 1) * 2 - 1).view(-1, 1).expand(height, fx.numel())
    gx = (fx / max(ref_columns - 1, 1) * 2 - 1).view(1, -1).expand(height, fx.numel())
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)
    resized = F.grid_sample(centred.unsqueeze(0), grid, mode="bilinear", padding_mode="border",
                            align_corners=True)[0].exp()
    resized[:, 0, 0] = magnitude[:, 0, 0].double() * ((height * width) / (ref_height * ref_width)) ** 0.5
    return resized.float()


def default_magnitude(channels: int, size: int | Sequence[int] | None = None) -> Tensor:
    """The shipped natural-image magnitude (:data:`DEFAULT_MAGNITUDE_FILE`) for RGB (3) or grayscale (1)
    images, resized with :func:`resize_magnitude` to ``size`` (default: 256 × 256, as estimated).

    Example:
        >>> default_magnitude(3).shape, default_magnitude(1, (32, 30)).shape
        (torch.Size([3, 256, 129]), torch.Size([1, 32, 16]))
    """
    names = {3: "rgb", 1: "gray"}
    if channels not in names:
        raise ValueError(f"the default magnitude is for 1 or 3 channels, not {channels}; estimate one from your "
                         f"images with estimate_magnitude (or MacoImage.from_images)")
    magnitude = torch.load(DEFAULT_MAGNITUDE_FILE, weights_only=True)[names[channels]].float()
    return magnitude if size is None else resize_magnitude(magnitude, size)
