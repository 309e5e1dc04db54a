"""MACO: a fixed natural-image Fourier magnitude, an optimized phase (Fel et al. 2023); and its importance map."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from inputopt.functional.random import RowRandom
from inputopt.functional.magnitude import default_magnitude, estimate_magnitude, resize_magnitude
from inputopt.params.base import ImageParam

__all__ = ["MacoImage"]


class MacoImage(ImageParam):
    r"""MACO (MAgnitude Constrained Optimization): the images' Fourier magnitude is fixed to that of
    natural images and only the phase is optimized (Fel et al. 2023, "Unlocking Feature Visualization
    for Deeper Networks with MAgnitude Constrained Optimization").

    The trainable tensor is the phase of every image's real FFT, ``(B, C, H, W // 2 + 1)`` (one phase per
    image, channel and frequency); the magnitude is a fixed ``(C, H, W // 2 + 1)`` buffer. The images are
    ``sigmoid(standardize(irfft2(magnitude · exp(i · phase))))``: standardized per image (zero mean, unit
    standard deviation over all its pixels), then mapped into ``sigmoid=(low, high)``. On the
    self-conjugate columns of the ``rfft2`` layout (the first, and the last for an even width), the phase
    used is the odd part ``(φ(k) − φ(−k)) / 2``, so the spectrum is that of a real image and the
    magnitude of the images before standardization is exactly the fixed one (the constant term and
    the Nyquist terms keep phase 0).

    Colours: with ``decorrelate`` (the default ``None`` means true for RGB images, false otherwise) the
    three channels are decorrelated colours, standardized together and mixed into RGB by the colour
    matrix, as in the paper (and as :class:`FourierImage` with ``decorrelate=True``): the fixed magnitude
    is then that of natural photographs' decorrelated channels, and the images get their colour
    statistics. Without it, each RGB channel's phase is free, and the colours drift into saturated
    rainbows.

    The magnitude is, by ``magnitude``:

    - ``None``: the shipped default (:func:`~inputopt.functional.magnitude.default_magnitude`), the mean
      Hann-windowed spectrum of crops of six natural photographs (no axis streaks from their borders):
      of their decorrelated colour channels with ``decorrelate``, else RGB for 3 channels and their
      grayscale for 1;
    - a path to a ``.pt`` tensor ``(C, H, W // 2 + 1)`` (e.g. saved from
      :func:`~inputopt.functional.estimate_magnitude`);
    - a tensor: see :meth:`from_images`.

    A magnitude of another size is resized with :func:`~inputopt.functional.resize_magnitude`.

    The phases start uniform in ``[−π, π)``, row ``i`` from ``(seed, keys[i])``: images with a natural
    spectrum and random structure. There is no ``clamp`` or ``eps``: a projection onto a box or a ball
    does not keep the magnitude; the sigmoid keeps the images in range. :meth:`initialize_from` and
    :meth:`set_images_` take the phase of the given images: the nearest images with the fixed magnitude
    (the given images themselves when they have it, e.g. another :class:`MacoImage`'s).

    Args:
        magnitude: ``None`` (the default), a path to a ``.pt`` tensor, or a tensor.
        sigmoid: ``(low, high)``: the images' range; ``None`` leaves them standardized.
        decorrelate: mix decorrelated colour channels into RGB (``None``: for RGB images).
        color_matrix: the ``3 × 3`` colour matrix (``None``: the default, see :class:`ImageParam`).

    Example:
        >>> param = MacoImage().initialize((3, 16, 16), keys=[0, 1])
        >>> param().shape, param.phase.shape, param.magnitude.shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 3, 16, 9]), torch.Size([3, 16, 9]))
        >>> spectrum = torch.fft.rfft2(param.unstandardized(param.phase), norm="ortho")
        >>> torch.allclose(spectrum.abs(), param.magnitude.expand_as(spectrum), atol=1e-5)
        True
    """

    parameter_name = "phase"

    def __init__(self, magnitude: str | os.PathLike | Tensor | None = None,
                 sigmoid: Sequence[float] | None = (0.0, 1.0), decorrelate: bool | None = None,
                 color_matrix: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__(sigmoid=sigmoid, decorrelate=bool(decorrelate), color_matrix=color_matrix)
        if decorrelate is not None and not isinstance(decorrelate, bool):
            raise ValueError(f"decorrelate must be true, false or null (RGB images only), got {decorrelate!r}")
        self._auto_decorrelate = decorrelate is None
        if isinstance(magnitude, (str, os.PathLike)):
            path = Path(magnitude)
            if not path.is_file():
                raise FileNotFoundError(f"MacoImage: no magnitude file {str(path)!r} (a .pt tensor (C, H, W//2+1))")
            magnitude = torch.load(path, weights_only=True, map_location="cpu")
        if magnitude is not None:
            if not isinstance(magnitude, Tensor) or magnitude.ndim != 3 or not torch.isfinite(magnitude).all() \
                    or (magnitude < 0).any():
                raise ValueError("magnitude must be a (C, H, W // 2 + 1) tensor of finite values >= 0, got "
                                 f"{type(magnitude).__name__} {tuple(getattr(magnitude, 'shape', ()))}")
            magnitude = magnitude.detach().float().cpu()
        self._reference = magnitude
        self.register_buffer("magnitude", torch.empty(0), persistent=False)
        self.register_buffer("_odd_columns", torch.empty(0, dtype=torch.bool), persistent=False)
        self._size: tuple[int, int] = (0, 0)

    @classmethod
    def from_images(cls, images: Tensor | Iterable | str | os.PathLike, size: int | Sequence[int],
                    channels: int | None = None, sigmoid: Sequence[float] | None = (0.0, 1.0),
                    decorrelate: bool = False) -> MacoImage:
        """A :class:`MacoImage` whose magnitude is that of ``images`` (a tensor, a DataLoader or a folder).

        See :func:`~inputopt.functional.estimate_magnitude` for ``images``, ``size`` and ``channels``
        (Hann-windowed). With ``decorrelate=True`` (RGB) the magnitude is that of the images' decorrelated
        colour channels, which the parameterization mixes into RGB. For YAML, save the magnitude
        (``torch.save(estimate_magnitude(...), "magnitude.pt")``) and give its path as ``magnitude``.

        Example:
            >>> images = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(0))
            >>> param = MacoImage.from_images(images, 12).initialize((1, 12, 12), keys=[0])
            >>> torch.equal(param.magnitude, estimate_magnitude(images, 12))
            True
        """
        from inputopt.functional.color import DEFAULT_COLOR_MATRIX

        matrix = DEFAULT_COLOR_MATRIX if decorrelate else None
        return cls(magnitude=estimate_magnitude(images, size, channels, color_matrix=matrix), sigmoid=sigmoid,
                   decorrelate=decorrelate)

    def _check_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        if self._auto_decorrelate and len(image_shape) == 3:
            self.decorrelate = image_shape[0] == 3
        return super()._check_shape(image_shape)

    def build(self, image_shape: tuple[int, int, int]) -> None:
        channels, height, width = image_shape
        if self._reference is None:
            magnitude = default_magnitude(channels, (height, width), decorrelated=self.decorrelate)
        else:
            if self._reference.shape[0] != channels:
                raise ValueError(f"the magnitude has {self._reference.shape[0]} channel(s), the images {channels}")
            magnitude = resize_magnitude(self._reference, (height, width))
        # the columns whose coefficients pair k with -k (a real image's spectrum is conjugate there)
        odd = torch.zeros(width // 2 + 1, dtype=torch.bool)
        odd[0] = True
        if width % 2 == 0:
            odd[-1] = True
        negative = (-torch.arange(height)) % height
        magnitude[:, :, odd] = (magnitude[:, :, odd] + magnitude[:, negative][:, :, odd]) / 2
        self._size = (height, width)
        self.magnitude = magnitude.to(self.magnitude.device)
        self._odd_columns = odd.to(self.magnitude.device)

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        channels, height, width = image_shape
        return channels, height, width // 2 + 1

    def initialize(self, image_shape: Sequence[int], keys: Sequence[int], seed: int = 0) -> MacoImage:
        """Make the phases, uniform in ``[−π, π)``: ``len(keys)`` images, row ``i`` from ``(seed, keys[i])``.

        Returns:
            The parameterization itself.
        """
        shape = self._check_shape(image_shape)
        if len(keys) == 0:
            raise ValueError("initialize needs at least one key (one per image)")
        rows = [torch.rand(self.parameter_shape(shape), generator=torch.Generator().manual_seed(s))
                for s in RowRandom(seed).stream("start").seeds(keys)]
        self._set_tensor((torch.stack(rows) * 2 - 1) * math.pi)
        with torch.no_grad():
            self._start_at(self())
        return self

    def unstandardized(self, phase: Tensor) -> Tensor:
        """``irfft2(magnitude · exp(i · phase))``: images whose spectrum's magnitude is the fixed one."""
        height = self._size[0]
        negative = (-torch.arange(height, device=phase.device)) % height
        phase = torch.where(self._odd_columns, (phase - phase[..., negative, :]) / 2, phase)
        return torch.fft.irfft2(torch.polar(self.magnitude.expand_as(phase), phase), s=self._size, norm="ortho")

    def to_spatial(self, tensor: Tensor) -> Tensor:
        x = self.unstandardized(tensor)
        x = x - x.mean((1, 2, 3), keepdim=True)
        return x / x.pow(2).mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)

    def from_spatial(self, images: Tensor) -> Tensor:
        # standardizing shifts the constant term and scales the rest: the phases are unchanged
        return torch.fft.rfft2(images, norm="ortho").angle()
