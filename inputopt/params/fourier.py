"""A spectrum scaled by 1/frequency: images whose energy is spread over frequencies like a photograph's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inputopt.functional.projection import Norm
from inputopt.params.base import ImageParam

__all__ = ["FourierImage", "frequency_scale"]


def frequency_scale(height: int, width: int, decay_power: float = 1.0) -> Tensor:
    r"""The ``(H, W // 2 + 1)`` scale :math:`1 / \max(f, 1/\max(H, W))^{p}` of a real FFT's coefficients,
    normalized so that white spectral noise of standard deviation σ gives images of about σ per pixel.

    Example:
        >>> s = frequency_scale(8, 8)
        >>> s.shape, bool(s[0, 1] > s[0, 2] > s[0, 4])  # low frequencies weigh most
        (torch.Size([8, 5]), True)
    """
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    frequency = (fy**2 + fx**2).sqrt()
    scale = frequency.clamp_min(1.0 / max(height, width)).pow(-decay_power)
    return scale / (2 * scale.pow(2).mean()).sqrt()


class FourierImage(ImageParam):
    r"""The images' 2-D spectrum is optimized, each frequency scaled by :math:`1/f^{p}`.

    The trainable tensor is the real and imaginary part of every image's real FFT (``rfft2``,
    orthonormal), one spectrum per channel. Multiplying coefficient ``f`` by :math:`1/f^p` makes a
    gradient step change low frequencies more than high ones, so that the images' spectrum falls off
    like a natural photograph's instead of filling with high-frequency patterns (Olah et al. 2017,
    the parameterization of Lucid and Lucent). With ``decorrelate=True`` (RGB), the channels are also
    decorrelated colours. The scale is normalized so that ``std`` is about the starting images'
    standard deviation per pixel, as for :class:`PixelImage`.

    Args:
        decay_power: the exponent ``p`` (0: white, no scaling; 1: the usual ``1/f``).
        mean, std, decorrelate, color_matrix, sigmoid, clamp, eps, norm: see :class:`ImageParam`.

    Example:
        >>> param = FourierImage(decorrelate=True, sigmoid=(0, 1)).initialize((3, 16, 16), keys=[0, 1])
        >>> param().shape, param.spectrum.shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 3, 16, 9, 2]))
        >>> bool(param().min() > 0 and param().max() < 1)
        True
    """

    parameter_name = "spectrum"

    def __init__(self, decay_power: float = 1.0, mean: float | Sequence[float] = 0.0, std: float = 0.01,
                 decorrelate: bool = False, color_matrix: Sequence[Sequence[float]] | None = None,
                 sigmoid: Sequence[float] | None = None, clamp: Sequence[float] | None = None,
                 eps: float | None = None, norm: Norm = "Linf") -> None:
        super().__init__(mean, std, decorrelate, color_matrix, sigmoid, clamp, eps, norm)
        if isinstance(decay_power, bool) or not isinstance(decay_power, (int, float)) or not decay_power >= 0:
            raise ValueError(f"decay_power must be a number >= 0, got {decay_power!r}")
        self.decay_power = float(decay_power)
        self.register_buffer("scale", torch.empty(0), persistent=False)
        self._size: tuple[int, int] = (0, 0)

    def build(self, image_shape: tuple[int, int, int]) -> None:
        self._size = image_shape[1:]
        self.scale = frequency_scale(*self._size, self.decay_power).to(self.scale.device)

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        channels, height, width = image_shape
        return channels, height, width // 2 + 1, 2

    def to_spatial(self, tensor: Tensor) -> Tensor:
        spectrum = torch.view_as_complex(tensor.contiguous()) * self.scale
        return torch.fft.irfft2(spectrum, s=self._size, norm="ortho")

    def from_spatial(self, images: Tensor) -> Tensor:
        return torch.view_as_real(torch.fft.rfft2(images, norm="ortho") / self.scale).contiguous()
