"""Robustness transforms, applied to the images in the loss forward only, with per-row seeded randomness."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt._config import Configurable, build
from inputopt.functional.geometry import affine_sample
from inputopt.functional.init import row_uniform

__all__ = ["AffineTransform", "Transform", "Transforms"]


class Transform(Configurable, nn.Module, ABC):
    """A differentiable, batched change of the images, random per row: ``forward(x, u) -> x'``.

    ``u`` holds :attr:`num_random` uniform numbers in [0, 1) per row, drawn by :class:`Transforms` from
    ``(seed, unit, step)``; a transform turns them into its own parameters (a shift, an angle), so its
    result for a unit never depends on the batch, the device or a resume. Transforms apply to the loss
    forward only: priors, saved images, prediction tables and checks see the images themselves.

    Example:
        >>> class Flip(Transform):
        ...     num_random = 1
        ...     def forward(self, x, u):
        ...         flip = (u[:, 0] < 0.5).view(-1, 1, 1, 1)
        ...         return torch.where(flip, x.flip(-1), x)
        >>> Flip()(torch.ones(2, 3, 4, 4), torch.tensor([[0.2], [0.9]])).shape
        torch.Size([2, 3, 4, 4])
    """

    #: How many uniform random numbers each row needs.
    num_random: int = 0

    @abstractmethod
    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        """Transform images ``x`` ``(B, C, H, W)`` with the random numbers ``u`` ``(B, num_random)``."""

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The ``(C, H, W)`` of its output for images of ``image_shape``; raises ``ValueError`` for a size
        it cannot sensibly take. Default: the same shape."""
        return image_shape


class AffineTransform(Transform):
    """A transform that is an affine map of pixel positions; consecutive ones are fused into one resampling.

    A subclass implements :meth:`matrices`: ``(B, 3, 3)`` maps from output to input pixel positions
    (see :func:`~inputopt.functional.geometry.affine_sample`).
    """

    @abstractmethod
    def matrices(self, u: Tensor) -> Tensor:
        """``(B, 3, 3)`` float64 maps from output to input pixel positions, from ``u`` ``(B, num_random)``."""

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return affine_sample(x, self.matrices(u.to(torch.float64)))


class Transforms(nn.Module):
    """A list of transforms applied in order, each row with its own random draws.

    Row ``i``'s numbers come from ``(seeds[i], step)`` only (:func:`~inputopt.functional.row_uniform`),
    with ``seeds`` derived from ``(seed, unit)``. Consecutive :class:`AffineTransform` s are composed into
    one matrix per row and applied with a single ``grid_sample``, so jitter, scale and rotation cost one
    resampling of the batch, not one per transform.

    The network sees images of the configured size: with ``keep_size=True`` (the default), a result that
    a transform made larger (:class:`~inputopt.transforms.Pad`) is resized back to the input's size in
    that same ``grid_sample`` (the padded field of view, shrunk; a bilinear resize when the last
    transform is not affine). Padding then costs no extra pixels in the network, and a padded run's
    step costs what an unpadded one does. ``keep_size=False`` passes the larger images on, as Lucent's
    transforms do.

    Args:
        transforms: the transforms (or their ``{"class_path", "init_args"}`` configs).
        keep_size: resize the result to the input's ``(H, W)``.

    Example:
        >>> from inputopt.transforms import Jitter, Pad, RandomRotate
        >>> transforms = Transforms([Pad(4), Jitter(2), RandomRotate(10)])
        >>> transforms(torch.zeros(2, 3, 16, 16), seeds=[11, 12], step=0).shape
        torch.Size([2, 3, 16, 16])
        >>> Transforms([Pad(4), Jitter(2)], keep_size=False)(torch.zeros(2, 3, 16, 16), [11, 12], 0).shape
        torch.Size([2, 3, 24, 24])
    """

    def __init__(self, transforms: Sequence[Transform], keep_size: bool = True) -> None:
        super().__init__()
        self.keep_size = bool(keep_size)
        built = [build(t, Transform) for t in transforms]
        bad = [t for t in built if not isinstance(t, Transform)]
        if bad:
            raise ValueError(f"transforms must be Transform instances, got {bad[0]!r}")
        self.transforms = nn.ModuleList(built)

    def __len__(self) -> int:
        return len(self.transforms)

    def check(self, image_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` when a transform cannot sensibly take the images it would get (e.g. a jitter
        as large as the image).

        Example:
            >>> from inputopt.transforms import Jitter, Pad
            >>> Transforms([Pad(4), Jitter(8)]).check((3, 16, 16))
        """
        shape = tuple(image_shape)
        for transform in self.transforms:
            shape = transform.output_shape(shape)

    def forward(self, x: Tensor, seeds: Sequence[int], step: int) -> Tensor:
        if len(seeds) != x.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {len(seeds)} row seeds")
        size = tuple(x.shape[-2:]) if self.keep_size else None
        total = sum(t.num_random for t in self.transforms)
        u = row_uniform(seeds, step, total).to(x.device)
        offset = 0
        pending: Tensor | None = None  # the composed map of a run of affine transforms
        for transform in self.transforms:
            draws = u[:, offset:offset + transform.num_random]
            offset += transform.num_random
            if isinstance(transform, AffineTransform):
                matrices = transform.matrices(draws)
                pending = matrices if pending is None else pending @ matrices
                continue
            if pending is not None:
                x, pending = affine_sample(x, pending), None
            x = transform(x, draws)
        if pending is not None:
            return affine_sample(x, pending, size=size)
        if size is not None and tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return x
