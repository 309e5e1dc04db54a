"""Robustness transforms, applied to the images in the loss forward only, with per-row seeded randomness."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
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

    Args:
        transforms: the transforms (or their ``{"class_path", "init_args"}`` configs).

    Example:
        >>> from inputopt.transforms import Jitter, Pad, RandomRotate
        >>> transforms = Transforms([Pad(4), Jitter(2), RandomRotate(10)])
        >>> transforms(torch.zeros(2, 3, 16, 16), seeds=[11, 12], step=0).shape
        torch.Size([2, 3, 24, 24])
    """

    def __init__(self, transforms: Sequence[Transform]) -> None:
        super().__init__()
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
        return x if pending is None else affine_sample(x, pending)
