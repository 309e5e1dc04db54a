"""How one shared input enters every image of a data set: added as a perturbation, or pasted as a patch.

An :class:`Insert` maps the shared input ``s`` (one row, from an image parameterization) and a batch of data
images ``x`` ``(B, C, H, W)`` to the images the network sees. Like a :class:`~inputopt.transforms.Transform`,
it gets :attr:`~Insert.num_random` uniform numbers per row, drawn from ``(seed, sample index, step)``, so a
sample's patch placement never depends on the batch, the device or a resume. The runner is
:class:`~inputopt.runners.shared.SharedInputOptimization`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from inputopt._config import Configurable
from inputopt.functional.patch import disc_mask, paste_patch, patch_placements
from inputopt.params.base import ImageParam
from inputopt.transforms.geometric import _range

__all__ = ["AddPerturbation", "Insert", "PastePatch"]


class Insert(Configurable, nn.Module, ABC):
    """How the shared input ``s`` ``(1, *input_shape)`` enters images ``x`` ``(B, C, H, W)``: ``forward(s, x, u)``."""

    #: How many uniform random numbers each row needs.
    num_random: int = 0

    @abstractmethod
    def input_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The ``(C, h, w)`` of the shared input for data images of ``image_shape``."""

    @abstractmethod
    def forward(self, shared: Tensor, images: Tensor, u: Tensor) -> Tensor:
        """The images with the shared input in them, ``(B, C, H, W)``; ``u``: ``(B, num_random)`` in [0, 1)."""

    def check_param(self, param: ImageParam) -> None:
        """Raise ``ValueError`` when ``param`` does not suit this insert (default: any)."""

    def default_param(self) -> ImageParam:
        """The parameterization used when none is given."""
        from inputopt.params.pixel import PixelImage

        return PixelImage(mean=0.5, std=0.1, clamp=(0.0, 1.0))


class AddPerturbation(Insert):
    """``x' = clamp(x + δ, low, high)``: a universal perturbation, the same δ added to every image.

    The budget ``‖δ‖ ≤ ε`` is the parameterization's ε-ball around zero (``PixelImage(std=0, eps=0.2,
    norm="Linf")``, projected after every step); ``clamp`` keeps the perturbed images valid.

    Args:
        clamp: ``(low, high)`` of the perturbed images (``None``: no clamp).

    Example:
        >>> AddPerturbation()(torch.full((1, 1, 2, 2), 0.3), torch.full((2, 1, 2, 2), 0.9), torch.empty(2, 0)).max().item()
        1.0
    """

    def __init__(self, clamp: Sequence[float] | None = (0.0, 1.0)) -> None:
        super().__init__()
        self.clamp = None if clamp is None else _range(tuple(clamp), "clamp", symmetric=False)

    def input_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(image_shape)

    def check_param(self, param: ImageParam) -> None:
        if param.eps is None:
            raise ValueError("a universal perturbation needs a budget: give the parameterization an eps-ball around "
                             "zero, e.g. PixelImage(mean=0, std=0, eps=0.2, norm='Linf')")
        if any(m != 0 for m in param.means) or param.sigmoid is not None:
            raise ValueError(f"a universal perturbation starts at zero (the centre of its eps-ball): the "
                             f"parameterization must have mean 0 and no sigmoid, got {param!r}")

    def default_param(self) -> ImageParam:
        raise ValueError("a universal perturbation needs a budget: give param, e.g. "
                         "PixelImage(mean=0, std=0, eps=0.2, norm='Linf')")

    def forward(self, shared: Tensor, images: Tensor, u: Tensor) -> Tensor:
        x = images + shared
        return x if self.clamp is None else x.clamp(*self.clamp)


class PastePatch(Insert):
    """Paste the shared input, a patch, into every image at a random position, scale and rotation.

    At scale 1 the patch covers ``area`` of the image (its visible shape: the square, or the disc of a
    ``"circle"`` patch). Each row's scale (of the side) is uniform in ``scale``, its angle in ``degrees``, and
    its centre uniform over the positions that keep the patch inside the image (Brown et al. 2017).

    Args:
        area: the fraction of the image area the patch covers at scale 1, in (0, 1).
        shape: ``"square"`` or ``"circle"``.
        scale: ``(low, high)`` of the random scale of the patch's side.
        degrees: ``d`` for angles uniform in ``[−d, d]``, or ``(low, high)``.

    Example:
        >>> paste = PastePatch(area=0.25, shape="square", degrees=0)
        >>> paste.input_shape((3, 32, 32))
        (3, 16, 16)
        >>> draws = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
        >>> out = paste(torch.ones(1, 3, 16, 16), torch.zeros(4, 3, 32, 32), draws)
        >>> round(out.mean().item(), 4)  # the patch covers a quarter of every image (up to float rounding)
        0.25
    """

    num_random = 4

    def __init__(self, area: float = 0.1, shape: str = "square", scale: Sequence[float] = (1.0, 1.0),
                 degrees: float | Sequence[float] = 20.0) -> None:
        super().__init__()
        if isinstance(area, bool) or not isinstance(area, (int, float)) or not 0 < area < 1:
            raise ValueError(f"area must be a fraction of the image in (0, 1), got {area!r}")
        if shape not in ("square", "circle"):
            raise ValueError(f"shape must be 'square' or 'circle', got {shape!r}")
        self.area, self.shape = float(area), shape
        self.scale = _range(tuple(scale), "scale", symmetric=False)
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.degrees = _range(degrees, "degrees", symmetric=True)

    def side(self, image_shape: tuple[int, int, int]) -> int:
        """The patch's side in pixels for images of ``image_shape``."""
        _, height, width = image_shape
        fill = 1.0 if self.shape == "square" else math.pi / 4
        return max(1, round(math.sqrt(self.area * height * width / fill)))

    def input_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        side = self.side(image_shape)
        if side > min(image_shape[1:]):
            raise ValueError(f"a patch of area {self.area} ({side} px) does not fit in {image_shape[1]}x{image_shape[2]} "
                             f"images; use a smaller area")
        return image_shape[0], side, side

    def mask(self, shared: Tensor) -> Tensor | None:
        """The patch's shape as a ``(1, 1, h, w)`` mask (``None``: the whole square)."""
        return disc_mask(*shared.shape[-2:], device=shared.device) if self.shape == "circle" else None

    def placements(self, images: Tensor, shared: Tensor, u: Tensor) -> Tensor:
        """Per-row ``(B, 4)`` centre x, centre y, scale, angle (see :func:`~inputopt.functional.patch_placements`)."""
        return patch_placements(u.to(images.device), tuple(images.shape[-2:]), tuple(shared.shape[-2:]), self.scale,
                                self.degrees)

    def forward(self, shared: Tensor, images: Tensor, u: Tensor) -> Tensor:
        return paste_patch(images, shared.to(images.dtype), self.placements(images, shared, u), self.mask(shared))
