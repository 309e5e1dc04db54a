"""The multi-scale edge energy, a prior that favours images whose edges are sparse at every scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_kernel2d", "multi_scale_edge_energy"]

MIN_SIDE = 5


def gaussian_kernel2d(size: int = 5, sigma: float = 1.0, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> Tensor:
    """A normalized 2-D Gaussian kernel of shape ``(size, size)`` that sums to one.

    Args:
        size: odd side length in pixels.
        sigma: standard deviation in pixels.
        dtype: dtype of the kernel.
        device: device of the kernel.

    Example:
        >>> k = gaussian_kernel2d(5, 1.0)
        >>> k.shape, round(k.sum().item(), 6)
        (torch.Size([5, 5]), 1.0)
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def multi_scale_edge_energy(x: Tensor, kernel_size: int = 5, sigma: float = 1.0, reduction: str = "sum") -> Tensor:
    r"""Multi-scale edge energy :math:`h(x) = \sum_{s \ge 0} \| \delta^s(x) - g \circledast \delta^s(x) \|^2`.

    ``g`` is a normalized Gaussian (zero-padded, "same"-size convolution), ``δ`` halves the image by
    average pooling (kernel 2, padding 1), and scales are added while the smaller side is larger than 5
    pixels. Every channel is treated as a separate grey image; the terms are summed per sample. The
    computation always runs in float32 (or float64 if ``x`` is float64), outside any autocast region.

    Args:
        x: images of shape ``(B, C, H, W)`` with ``min(H, W) > 5``.
        kernel_size: side of the Gaussian kernel.
        sigma: standard deviation of the Gaussian kernel, in pixels.
        reduction: ``"sum"`` (the definition above) or ``"mean"``: the sum divided by ``C·H·W``, the number
            of values of an image. The sum grows with the image's size and channels (an image with the same
            texture at 4x the pixels has about 4x the energy), the mean does not, so one prior weight serves
            every size: ``weight_mean = weight_sum · C·H·W``.

    Returns:
        Tensor of shape ``(B,)``: the energy of each image.

    Example:
        >>> x = torch.zeros(2, 3, 32, 32)
        >>> multi_scale_edge_energy(x)
        tensor([0., 0.])
        >>> multi_scale_edge_energy(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2])
    """
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    batch, channels, height, width = x.shape
    if min(height, width) <= MIN_SIDE:
        raise ValueError(
            f"multi-scale edge energy needs images whose smaller side is > {MIN_SIDE} pixels "
            f"(at least one scale); got {height}x{width}"
        )
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        u = x.to(dtype).reshape(batch * channels, 1, height, width)
        kernel = gaussian_kernel2d(kernel_size, sigma, dtype=dtype, device=x.device)[None, None]
        energy = u.new_zeros(batch * channels)
        while min(u.shape[-2:]) > MIN_SIDE:
            detail = u - F.conv2d(u, kernel, padding=kernel_size // 2)
            energy = energy + detail.pow(2).flatten(1).sum(1)
            u = F.avg_pool2d(u, kernel_size=2, padding=1)
        energy = energy.view(batch, channels).sum(1)
        return energy if reduction == "sum" else energy / (channels * height * width)
