"""Padding, jitter, random scaling and random rotation."""

from __future__ import annotations

from collections.abc import Sequence

import torch  # noqa: F401  (the doctests use it)
import torch.nn.functional as F
from torch import Tensor

from inputopt.functional.geometry import rotation_matrices, scale_matrices, translation_matrices
from inputopt.transforms.base import AffineTransform, Transform

__all__ = ["Jitter", "Pad", "RandomRotate", "RandomScale"]


def _range(value: float | Sequence[float], name: str, symmetric: bool) -> tuple[float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high = (-float(value), float(value)) if symmetric else (float(value), float(value))
    elif isinstance(value, Sequence) and len(value) == 2:
        low, high = float(value[0]), float(value[1])
    else:
        raise ValueError(f"{name} must be a number or (low, high), got {value!r}")
    if not low <= high:
        raise ValueError(f"{name} must have low <= high, got {value!r}")
    return low, high


class Pad(Transform):
    """Pad every side by ``width`` pixels, so that jitter and rotation do not bring the borders inward.

    Args:
        width: pixels added on each side.
        mode: ``"constant"`` (with ``value``), ``"reflect"`` or ``"replicate"``.
        value: the constant of ``mode="constant"`` (e.g. 0.5 for grey images in [0, 1]).

    Example:
        >>> Pad(2, value=0.5)(torch.zeros(1, 3, 4, 4), torch.empty(1, 0)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, width: int, mode: str = "constant", value: float = 0.0) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise ValueError(f"width must be an int >= 0, got {width!r}")
        if mode not in ("constant", "reflect", "replicate"):
            raise ValueError(f"mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
        self.width, self.mode, self.value = width, mode, float(value)

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        channels, height, width = image_shape
        if self.mode == "reflect" and self.width >= min(height, width):
            raise ValueError(f"Pad(width={self.width}, mode='reflect') needs width < the image size "
                             f"{height}x{width}; use a smaller width or mode='replicate'")
        return channels, height + 2 * self.width, width + 2 * self.width

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        pad = (self.width,) * 4
        return F.pad(x, pad, mode=self.mode, value=self.value) if self.mode == "constant" else F.pad(x, pad, self.mode)


class Jitter(AffineTransform):
    """Move each image's content by a random whole number of pixels, up to ``pixels`` in each direction.

    Example:
        >>> Jitter(3)(torch.zeros(2, 3, 8, 8), torch.rand(2, 2)).shape
        torch.Size([2, 3, 8, 8])
    """

    num_random = 2

    def __init__(self, pixels: int) -> None:
        super().__init__()
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
            raise ValueError(f"pixels must be an int >= 0, got {pixels!r}")
        self.pixels = pixels

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        if self.pixels >= min(image_shape[1:]):
            raise ValueError(f"Jitter(pixels={self.pixels}) would shift the {image_shape[1]}x{image_shape[2]} images "
                             f"it gets (after any padding) out of view; pixels must be < {min(image_shape[1:])}")
        return image_shape

    def matrices(self, u: Tensor) -> Tensor:
        shift = (u * (2 * self.pixels + 1)).floor().clamp(max=2 * self.pixels) - self.pixels
        return translation_matrices(shift[:, 0], shift[:, 1])


class RandomScale(AffineTransform):
    """Magnify each image's content about its centre by a random factor, uniform in ``[low, high]``.

    Example:
        >>> RandomScale(0.9, 1.1)(torch.zeros(2, 3, 8, 8), torch.rand(2, 1)).shape
        torch.Size([2, 3, 8, 8])
    """

    num_random = 1

    def __init__(self, low: float = 0.9, high: float = 1.1) -> None:
        super().__init__()
        self.low, self.high = _range((low, high), "scale", symmetric=False)
        if self.low <= 0:
            raise ValueError(f"scale factors must be > 0, got low={low}")

    def matrices(self, u: Tensor) -> Tensor:
        return scale_matrices(self.low + u[:, 0] * (self.high - self.low))


class RandomRotate(AffineTransform):
    """Rotate each image's content about its centre by a random angle in degrees.

    Args:
        degrees: ``d`` for angles uniform in ``[−d, d]``, or ``(low, high)``.

    Example:
        >>> RandomRotate(10)(torch.zeros(2, 3, 8, 8), torch.rand(2, 1)).shape
        torch.Size([2, 3, 8, 8])
    """

    num_random = 1

    def __init__(self, degrees: float | Sequence[float] = 10.0) -> None:
        super().__init__()
        self.degrees = degrees
        self.low, self.high = _range(degrees, "degrees", symmetric=True)

    def matrices(self, u: Tensor) -> Tensor:
        return rotation_matrices(self.low + u[:, 0] * (self.high - self.low))
