"""Pixels: the images are the trainable tensor itself."""

from __future__ import annotations

from torch import Tensor

from inputopt.params.base import ImageParam

__all__ = ["PixelImage"]


class PixelImage(ImageParam):
    """The images' pixels are optimized directly (plus the options of :class:`ImageParam`).

    With its defaults, the images start as ``mean + std · N(0, 1)`` noise and the optimizer moves every
    pixel freely: the parameterization of the reference experiments and of pixel-space attacks
    (``clamp=(0, 1)`` with an ``eps``-ball is projected gradient descent's constraint set).

    Args:
        mean: the starting images' mean (a float, or one per channel).
        std: the starting noise's standard deviation.
        decorrelate, color_matrix, sigmoid, clamp, eps, norm: see :class:`ImageParam`.

    Example:
        >>> param = PixelImage(mean=0.5, std=0.1, clamp=(0, 1)).initialize((1, 8, 8), keys=[3, 7], seed=0)
        >>> param().shape, param.pixels.shape
        (torch.Size([2, 1, 8, 8]), torch.Size([2, 1, 8, 8]))
    """

    parameter_name = "pixels"

    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        return image_shape

    def to_spatial(self, tensor: Tensor) -> Tensor:
        return tensor

    def from_spatial(self, images: Tensor) -> Tensor:
        return images
