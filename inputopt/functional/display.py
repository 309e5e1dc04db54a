"""Map optimized inputs to displayable images in [0, 1]."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

__all__ = ["DisplayMode", "to_display"]

DisplayMode = Literal["std", "clamp"]


def to_display(x: Tensor, mode: DisplayMode = "std", eps: float = 1e-12) -> Tensor:
    """Map images to [0, 1] for display.

    ``"std"`` is the reference normalization ``0.5 + 0.1·(x − mean)/std`` per image (mean and std over
    all its pixels and channels), clamped to [0, 1]; it shows the structure of an optimized input
    whatever its scale. ``"clamp"`` clamps the values to [0, 1], for inputs that live in pixel space.

    Args:
        x: images of shape ``(B, C, H, W)``.
        mode: ``"std"`` or ``"clamp"``.
        eps: added to the standard deviation, so a constant image does not divide by zero.

    Returns:
        float32 tensor of the same shape, values in [0, 1].

    Example:
        >>> import torch
        >>> y = to_display(torch.randn(2, 3, 8, 8))
        >>> bool(y.min() >= 0 and y.max() <= 1)
        True
    """
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")
    x = x.detach().float()
    if mode == "std":
        flat = x.flatten(1)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).nan_to_num(0.0).view(-1, 1, 1, 1)  # torch.std, as the reference; NaN for one pixel
        return (0.5 + 0.1 * (x - mean) / (std + eps)).clamp(0, 1)
    if mode == "clamp":
        return x.clamp(0, 1)
    raise ValueError(f"display mode must be 'std' or 'clamp', got {mode!r}")
