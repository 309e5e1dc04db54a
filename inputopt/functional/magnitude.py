"""Fourier magnitude spectra of natural images: MACO's fixed magnitude, estimated, shipped and resized."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_MAGNITUDE_FILE", "DEFAULT_MAGNITUDE_SIZE", "default_magnitude", "estimate_default_magnitudes",
           "estimate_magnitude", "multiscale_crops", "resize_magnitude"]

#: The size the shipped magnitudes are estimated at (ImageNet networks' input size).
DEFAULT_MAGNITUDE_SIZE = 224

#: The shipped default magnitudes, ``{"rgb": (3, 224, 113), "gray": (1, 224, 113), "decorrelated": (3, 224,
#: 113)}`` float16: the mean Hann-windowed ``|rfft2|`` (orthonormal) of 224 × 224 crops at three scales of
#: the six photographs of :func:`~inputopt.functional.color.natural_photographs` (pixel values in [0, 1]),
#: of their grayscale versions (ITU-R 601 luma), and of their decorrelated colour channels. Remade by
#: :func:`estimate_default_magnitudes` (``tests/functional/test_magnitude.py`` re-estimates it). Loading
#: the photographs takes seconds and needs scikit-image and scikit-learn, hence the file.
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


def _hann(height: int, width: int) -> Tensor:
    """A 2-D Hann window normalized to unit mean square (so windowing keeps a stationary spectrum's level)."""
    window = torch.outer(torch.hann_window(height, periodic=False, dtype=torch.float64),
                         torch.hann_window(width, periodic=False, dtype=torch.float64))
    return window / window.square().mean().sqrt()


def estimate_magnitude(images: Tensor | Iterable | str | os.PathLike, size: int | Sequence[int],
                       channels: int | None = None, window: str | None = "hann",
                       color_matrix: Tensor | Sequence[Sequence[float]] | None = None) -> Tensor:
    r"""The mean magnitude of the images' 2-D real FFT, per channel: :math:`\frac1N\sum_n |\mathrm{rfft2}(x_n)|`.

    Every image is resized (shorter side, antialiased) and centre-cropped to ``size`` first, unless it
    already has that size; the FFT is orthonormal (``norm="ortho"``).

    A photograph is not periodic: its left and right (top and bottom) borders differ, and the FFT sees
    that jump as a sharp edge along the border, whose energy lies on the frequency axes (a cross in the
    spectrum). Images made from such a magnitude have horizontal and vertical streaks that no photograph
    has. With ``window="hann"`` (the default) every image's deviation from its mean is multiplied by a
    2-D Hann window (normalized to unit mean square) before the FFT, which removes the jump; the
    constant term stays ``mean · √(H·W)``. ``window=None`` is the plain FFT.

    Args:
        images: a ``(B, C, H, W)`` tensor; an iterable of ``(C, H, W)`` / ``(B, C, H, W)`` tensors or of
            ``(images, labels)`` batches (a DataLoader); or a folder of image files (read as RGB, or
            grayscale when ``channels=1``).
        size: the image size ``(H, W)`` (or one int for a square) the spectrum is for.
        channels: convert RGB images to this many channels (1: grayscale); ``None`` keeps them.
        window: ``"hann"`` or ``None``.
        color_matrix: a ``3 × 3`` colour matrix ``M`` (RGB images): the spectrum of the decorrelated
            channels ``M⁻¹ x``, for a parameterization that mixes them into RGB with ``M`` (``MacoImage``
            with ``decorrelate=True``).

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
    if window not in (None, "hann"):
        raise ValueError(f"window must be 'hann' or None, got {window!r}")
    inverse = None
    if color_matrix is not None:
        matrix = torch.as_tensor(color_matrix, dtype=torch.float64)
        if matrix.shape != (3, 3):
            raise ValueError(f"color_matrix must be 3x3, got shape {tuple(matrix.shape)}")
        inverse = torch.linalg.inv(matrix)
    taper = _hann(height, width) if window == "hann" else None
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
        batch = batch.double()
        if inverse is not None:
            if batch.shape[1] != 3:
                raise ValueError(f"color_matrix is for RGB images, got {batch.shape[1]} channel(s)")
            batch = torch.einsum("cd,bdhw->bchw", inverse, batch)
        if taper is None:
            magnitude = torch.fft.rfft2(batch, norm="ortho").abs()
        else:
            mean = batch.mean((-2, -1), keepdim=True)
            magnitude = torch.fft.rfft2((batch - mean) * taper, norm="ortho").abs()
            magnitude[..., 0, 0] = mean[..., 0, 0].abs() * (height * width) ** 0.5
        magnitude = magnitude.sum(0)
        if total is not None and total.shape != magnitude.shape:
            raise ValueError(f"images with {magnitude.shape[0]} channel(s) after {total.shape[0]}; give channels=")
        total = magnitude if total is None else total + magnitude
        count += batch.shape[0]
    if total is None or count == 0:
        raise ValueError("estimate_magnitude needs at least one image")
    return (total / count).float()


def multiscale_crops(photos: Iterable[Tensor], size: int = DEFAULT_MAGNITUDE_SIZE,
                     scales: Sequence[float] = (1.0, 1.5, 2.0)) -> Tensor:
    """Square crops of ``size`` from each photograph at several scales: its shorter side resized to
    ``scale · size``, then a grid of ``ceil(scale)²`` crops from corner to corner (antialiased).

    Natural images' spectra are about scale-invariant, so crops at several scales give more samples of
    the same spectrum than one centre crop: the mean magnitude of a few photographs is smoother.

    Example:
        >>> multiscale_crops([torch.rand(3, 40, 50)], size=16, scales=(1.0, 2.0)).shape
        torch.Size([5, 3, 16, 16])
    """
    from torchvision.transforms.v2 import functional as TF  # torchvision only when estimating

    crops = []
    for photo in photos:
        for scale in scales:
            side = round(scale * size)
            image = TF.resize(photo.float(), side, antialias=True)
            _, height, width = image.shape
            n = math.ceil(scale)
            for y in torch.linspace(0, height - size, n).round().long().tolist():
                for x in torch.linspace(0, width - size, n).round().long().tolist():
                    crops.append(image[:, y:y + size, x:x + size])
    return torch.stack(crops)


def estimate_default_magnitudes(photos: Iterable[Tensor], size: int = DEFAULT_MAGNITUDE_SIZE) -> dict[str, Tensor]:
    """The shipped magnitudes from RGB photographs in [0, 1] (:data:`DEFAULT_MAGNITUDE_FILE` holds these for
    :func:`~inputopt.functional.color.natural_photographs`, in float16): Hann-windowed estimates over
    :func:`multiscale_crops`, ``"rgb"`` (3 channels), ``"gray"`` (1) and ``"decorrelated"`` (3: the channels
    of :data:`~inputopt.functional.color.DEFAULT_COLOR_MATRIX`).

    Example:
        >>> sorted(estimate_default_magnitudes([torch.rand(3, 20, 24)], size=16))
        ['decorrelated', 'gray', 'rgb']
    """
    from inputopt.functional.color import DEFAULT_COLOR_MATRIX

    crops = multiscale_crops(list(photos), size)
    return {"rgb": estimate_magnitude(crops, size), "gray": estimate_magnitude(crops, size, channels=1),
            "decorrelated": estimate_magnitude(crops, size, color_matrix=DEFAULT_COLOR_MATRIX)}


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


def default_magnitude(channels: int, size: int | Sequence[int] | None = None, decorrelated: bool = False) -> Tensor:
    """The shipped natural-image magnitude (:data:`DEFAULT_MAGNITUDE_FILE`) for RGB (3) or grayscale (1)
    images, or (``decorrelated=True``) for the decorrelated colour channels of RGB images, resized with
    :func:`resize_magnitude` to ``size`` (default: 224 × 224, as estimated).

    Example:
        >>> default_magnitude(3).shape, default_magnitude(1, (32, 30)).shape
        (torch.Size([3, 224, 113]), torch.Size([1, 32, 16]))
    """
    names = {3: "rgb", 1: "gray"}
    if channels not in names:
        raise ValueError(f"the default magnitude is for 1 or 3 channels, not {channels}; estimate one from your "
                         f"images with estimate_magnitude (or MacoImage.from_images)")
    if decorrelated and channels != 3:
        raise ValueError(f"decorrelated colour channels are for RGB images (3 channels), not {channels}")
    magnitude = torch.load(DEFAULT_MAGNITUDE_FILE, weights_only=True)["decorrelated" if decorrelated else names[channels]]
    magnitude = magnitude.float()
    return magnitude if size is None else resize_magnitude(magnitude, size)
