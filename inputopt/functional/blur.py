"""The blur penalty: a step towards a blurred copy of the image, written as a prior."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from inputopt.functional.edge_energy import gaussian_kernel2d

__all__ = ["blur_penalty", "normalized_blur"]


def normalized_blur(x: Tensor, kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    r"""Each channel blurred by a normalized Gaussian, divided by the blurred ones near the borders.

    :math:`b(x) = (g \circledast x) / (g \circledast 1)` with zero padding: inside the image it is the
    plain Gaussian blur, and at the border it averages the pixels that exist instead of pulling towards 0.

    Args:
        x: images ``(B, C, H, W)``.
        kernel_size: odd side of the Gaussian kernel ``g``.
        sigma: its standard deviation in pixels.

    Example:
        >>> normalized_blur(torch.ones(1, 2, 4, 4)).allclose(torch.ones(1, 2, 4, 4))
        True
    """
    if x.ndim != 4:
        raise ValueError(f"normalized_blur needs images of shape (B, C, H, W), got a tensor of shape "
                         f"{tuple(x.shape)}")
    batch, channels, height, width = x.shape
    kernel = gaussian_kernel2d(kernel_size, sigma, dtype=x.dtype, device=x.device)[None, None]
    u = x.reshape(batch * channels, 1, height, width)
    blurred = F.conv2d(u, kernel, padding=kernel_size // 2)
    weights = F.conv2d(torch.ones_like(u[:1]), kernel, padding=kernel_size // 2)
    return (blurred / weights).view(batch, channels, height, width)


def blur_penalty(x: Tensor, kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    r"""Half the squared distance to a blurred copy that gets no gradient: :math:`\tfrac12 \|x - \operatorname{sg}(b(x))\|^2`.

    ``b`` is :func:`normalized_blur` and ``sg`` stops the gradient, so the gradient is exactly
    :math:`x - b(x)`: a gradient step of size ``k`` on this penalty moves the image to
    :math:`(1 - k)\,x + k\, b(x)`, blurring it a little at every step (Nguyen et al. 2015; Lucid's
    ``blur_input_each_step``, which uses a fixed 3×3 kernel, centre 1 and neighbours ½, where this uses
    a Gaussian). The value is the true distance, but the gradient is not the value's gradient
    (``gradcheck`` does not apply). It runs in float32 (float64 stays float64), outside any autocast
    region.

    Args:
        x: images ``(B, C, H, W)``.
        kernel_size: odd side of the Gaussian kernel.
        sigma: its standard deviation in pixels.

    Returns:
        Tensor of shape ``(B,)``.

    Example:
        >>> x = torch.zeros(1, 1, 5, 5, requires_grad=True)
        >>> with torch.no_grad():
        ...     _ = x[0, 0, 2, 2].fill_(1.0)
        >>> penalty = blur_penalty(x)
        >>> penalty.backward()
        >>> torch.allclose(x.grad, x.detach() - normalized_blur(x.detach()))
        True
    """
    if x.ndim != 4:
        raise ValueError(f"blur_penalty needs images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x if x.dtype == torch.float64 else x.float()
        with torch.no_grad():
            target = normalized_blur(x, kernel_size, sigma)
        return 0.5 * (x - target).pow(2).flatten(1).sum(1)
