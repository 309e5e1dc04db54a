"""Total variation: the summed size of the differences between neighbouring pixels."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["total_variation"]


def _check_images(x: Tensor, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} needs images of shape (B, C, H, W), got a tensor of shape {tuple(x.shape)}")


def total_variation(x: Tensor, isotropic: bool = False) -> Tensor:
    r"""Total variation of each image, summed over its channels, each channel a separate grey image.

    With forward differences :math:`\Delta_v = x_{i+1,j} - x_{i,j}` and :math:`\Delta_h = x_{i,j+1} - x_{i,j}`:

    - anisotropic (default): :math:`\sum |\Delta_v| + \sum |\Delta_h|`, each sum over the pairs of
      neighbours that exist (``(H−1)·W`` vertical, ``H·(W−1)`` horizontal), as ``kornia.losses.total_variation``
      and TensorFlow's ``tf.image.total_variation`` (Lucid's) compute it;
    - isotropic: :math:`\sum_{i,j} \sqrt{\Delta_v^2 + \Delta_h^2}` over every pixel, a difference past the
      last row or column counted as 0; it does not favour edges along the axes. Its gradient at a pixel
      where both differences are 0 is taken as 0.

    Sums, not means: the value grows with the image's size, like the edge energy. It runs in float32
    (float64 stays float64), outside any autocast region.

    Args:
        x: images ``(B, C, H, W)``.
        isotropic: the isotropic form instead of the anisotropic one.

    Returns:
        Tensor of shape ``(B,)``.

    Example:
        >>> x = torch.tensor([[[[0.0, 3.0], [4.0, 3.0]]]])
        >>> total_variation(x), total_variation(x, isotropic=True)  # |4| + |0| + |3| + |-1|; 5 + 0 + 1 + 0
        (tensor([8.]), tensor([6.]))
    """
    _check_images(x, "total_variation")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x if x.dtype == torch.float64 else x.float()
        vertical = x[:, :, 1:, :] - x[:, :, :-1, :]
        horizontal = x[:, :, :, 1:] - x[:, :, :, :-1]
        if not isotropic:
            return vertical.abs().flatten(1).sum(1) + horizontal.abs().flatten(1).sum(1)
        vertical = torch.nn.functional.pad(vertical, (0, 0, 0, 1))
        horizontal = torch.nn.functional.pad(horizontal, (0, 1, 0, 0))
        return torch.linalg.vector_norm(torch.stack([vertical, horizontal]), dim=0).flatten(1).sum(1)
