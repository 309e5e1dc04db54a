"""The abstract image parameterization: trainable tensors in, images ``(B, C, H, W)`` out."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from inputopt._config import Configurable
from inputopt.functional.color import DEFAULT_COLOR_MATRIX
from inputopt.functional.init import seeded_noise
from inputopt.functional.projection import Norm, project_lp_ball

__all__ = ["ImageParam"]


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _interval(value: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if (len(value) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            or not value[0] < value[1]):
        raise ValueError(f"{name} must be (low, high) finite numbers with low < high, got {value!r}")
    return float(value[0]), float(value[1])


class ImageParam(Configurable, nn.Module, ABC):
    """How the optimized images are made from trainable tensors: ``param() -> (B, C, H, W)``.

    The constructor takes only options (plain values, so a YAML config chooses them); the trainable
    tensor is made by :meth:`initialize` (seeded noise: row ``i`` depends only on ``(seed, keys[i])``)
    or :meth:`initialize_from` (given images), which :class:`~inputopt.InputOptimization` calls. Every
    trainable tensor has one row per image, so rows can be frozen, sharded and saved independently.

    The images are ``box(colour(spatial(tensor)))``:

    - ``spatial``: the subclass's linear map (identity for pixels, an inverse FFT for a spectrum);
    - ``colour``: with ``decorrelate=True``, the channels are decorrelated colours mixed into RGB by a
      colour matrix (RGB images only);
    - ``box``: with ``sigmoid=(low, high)``, a sigmoid maps every value into ``(low, high)``.

    The starting tensor is seeded noise plus the tensor of a constant image ``mean`` (before the
    sigmoid, if any): the images start at ``mean`` plus noise.

    After every optimizer step, :meth:`project_` moves the images back into the constraint set: the box
    ``clamp=(low, high)`` and the ball ``‖x − x₀‖ ≤ eps`` around the starting images ``x₀`` (``norm``
    ``"Linf"`` or ``"L2"``). Parameterizations other than pixels project through their inverse map. The
    ball's radius is kept per image in :attr:`radius` (``eps`` for every row), which a minimal-norm
    attack shrinks and grows image by image.

    A subclass sets :attr:`parameter_name` and implements :meth:`parameter_shape`, :meth:`to_spatial`
    and :meth:`from_spatial` (its exact inverse).

    Args:
        mean: the starting images' mean before the sigmoid (a float, or one per channel).
        std: standard deviation of the random starting tensor.
        decorrelate: optimize decorrelated colour channels (RGB only); see :attr:`color_matrix`.
        color_matrix: the ``3 × 3`` colour matrix; ``None`` is
            :data:`~inputopt.functional.color.DEFAULT_COLOR_MATRIX`, estimated from natural photographs
            (estimate one from your images with :func:`~inputopt.functional.estimate_color_matrix`).
        sigmoid: ``(low, high)``: map the images into this interval with a sigmoid.
        clamp: ``(low, high)``: clamp the images into this box after every step.
        eps: radius of the ball around the starting images that every step projects onto.
        norm: the ball's norm, ``"Linf"`` or ``"L2"``.
    """

    #: The name of the trainable tensor (in ``state_dict`` and checkpoints).
    parameter_name: str = "tensor"

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float = 0.01, decorrelate: bool = False,
                 color_matrix: Sequence[Sequence[float]] | None = None, sigmoid: Sequence[float] | None = None,
                 clamp: Sequence[float] | None = None, eps: float | None = None, norm: Norm = "Linf") -> None:
        super().__init__()
        means = [mean] if isinstance(mean, (int, float)) else list(mean)
        self.means = [_finite(m, "mean") for m in means]
        self.std = _finite(std, "std")
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {std}")
        self.decorrelate = bool(decorrelate)
        matrix = torch.tensor(DEFAULT_COLOR_MATRIX if color_matrix is None else color_matrix, dtype=torch.float32)
        if matrix.shape != (3, 3) or not torch.isfinite(matrix).all() or torch.linalg.matrix_rank(matrix) < 3:
            raise ValueError(f"color_matrix must be an invertible 3x3 matrix of finite numbers, got {color_matrix!r}")
        self.sigmoid = _interval(sigmoid, "sigmoid")
        self.clamp = _interval(clamp, "clamp")
        self.eps = None if eps is None else _finite(eps, "eps")
        if self.eps is not None and self.eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
        self.norm = norm
        self.register_buffer("color_matrix", matrix, persistent=False)
        self.register_buffer("start", torch.empty(0), persistent=False)
        self.register_buffer("radius", torch.empty(0), persistent=False)

    # -- what a subclass provides -----------------------------------------------------------------------
    @abstractmethod
    def parameter_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        """The shape of one image's trainable tensor, for images of shape ``(C, H, W)``."""

    @abstractmethod
    def to_spatial(self, tensor: Tensor) -> Tensor:
        """The linear map from the trainable tensor ``(B, *parameter_shape)`` to ``(B, C, H, W)``."""

    @abstractmethod
    def from_spatial(self, images: Tensor) -> Tensor:
        """The inverse of :meth:`to_spatial`."""

    def build(self, image_shape: tuple[int, int, int]) -> None:
        """Make shape-dependent buffers (e.g. a frequency scale); called before the tensor is made."""

    # -- making the trainable tensor ---------------------------------------------------------------------
    def _check_shape(self, image_shape: Sequence[int]) -> tuple[int, int, int]:
        if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)}")
        channels = image_shape[0]
        if self.decorrelate and channels != 3:
            raise ValueError(f"decorrelate=True mixes RGB colours, but the images have {channels} channel(s); "
                             f"set decorrelate to false for non-RGB inputs")
        if len(self.means) not in (1, channels):
            raise ValueError(f"mean has {len(self.means)} values; give one, or one per channel ({channels})")
        self.build(tuple(image_shape))
        return tuple(image_shape)

    def _set_tensor(self, tensor: Tensor) -> None:
        self.register_parameter(self.parameter_name, nn.Parameter(tensor.contiguous()))

    def initialize(self, image_shape: Sequence[int], keys: Sequence[int], seed: int = 0) -> ImageParam:
        """Make the trainable tensor from seeded noise: ``len(keys)`` images, row ``i`` from ``(seed, keys[i])``.

        Returns:
            The parameterization itself.
        """
        shape = self._check_shape(image_shape)
        mean = torch.tensor(self.means).view(1, -1, 1, 1).expand(1, *shape)
        self._set_tensor(seeded_noise(self.parameter_shape(shape), keys, seed, 0.0, self.std) + self._linear_inverse(mean))
        with torch.no_grad():
            self._start_at(self())
        return self

    def initialize_from(self, images: Tensor) -> ImageParam:
        """Make the trainable tensor so that the images start as ``images`` ``(B, C, H, W)``.

        With ``sigmoid``, values at or beyond its bounds start just inside them.
        """
        if images.ndim != 4:
            raise ValueError(f"starting images must have shape (B, C, H, W), got {tuple(images.shape)}")
        self._check_shape(tuple(images.shape[1:]))
        images = images.detach().float().clone()  # never share memory with the caller's tensor
        self._set_tensor(self._inverse(images).clone())
        self._start_at(images)
        return self

    @torch.no_grad()
    def _start_at(self, images: Tensor) -> None:
        """Record the starting images, moved into the ``clamp`` box (the centre of the ε-ball)."""
        if self.clamp is not None and ((images < self.clamp[0]) | (images > self.clamp[1])).any():
            images = images.clamp(*self.clamp)
            self.set_images_(images)
        self.start = images.clone()
        if self.eps is not None:
            self.radius = torch.full((images.shape[0],), self.eps, device=images.device)

    # -- images -----------------------------------------------------------------------------------------
    @property
    def tensor(self) -> nn.Parameter:
        """The trainable tensor, one row per image."""
        try:
            return getattr(self, self.parameter_name)
        except AttributeError:
            raise RuntimeError(f"{type(self).__name__} has no tensor yet: call initialize(image_shape, keys, seed) "
                               f"or initialize_from(images) (InputOptimization does)") from None

    @property
    def batch_size(self) -> int:
        return self.tensor.shape[0]

    def forward(self) -> Tensor:
        """The images ``(B, C, H, W)``, float32 whatever the autocast context (float64 when the parameterization
        was made float64, e.g. by a ``Trainer(precision="64-true")``)."""
        tensor = self.tensor
        with torch.autocast(device_type=tensor.device.type, enabled=False):
            x = self.to_spatial(tensor if tensor.dtype == torch.float64 else tensor.float())
            if self.decorrelate:
                x = torch.einsum("cd,bdhw->bchw", self.color_matrix.to(x.dtype), x)
            if self.sigmoid is not None:
                low, high = self.sigmoid
                x = low + (high - low) * torch.sigmoid(x)
        return x

    def _inverse(self, images: Tensor) -> Tensor:
        x = images
        if self.sigmoid is not None:
            low, high = self.sigmoid
            x = torch.logit(((x - low) / (high - low)).clamp(1e-6, 1 - 1e-6))
        return self._linear_inverse(x)

    def _linear_inverse(self, x: Tensor) -> Tensor:
        if self.decorrelate:
            x = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(self.color_matrix), x)
        return self.from_spatial(x)

    @torch.no_grad()
    def set_images_(self, images: Tensor, rows: Tensor | None = None) -> None:
        """Set the trainable tensor so that the images of ``rows`` (default: all) become ``images``."""
        if rows is None:
            self.tensor.copy_(self._inverse(images))
        elif rows.any():
            self.tensor[rows] = self._inverse(images[rows] if images.shape[0] == rows.shape[0] else images)

    @property
    def constrained(self) -> bool:
        """Whether :meth:`project_` does anything (a clamp or an ε-ball is set)."""
        return self.clamp is not None or self.eps is not None

    @torch.no_grad()
    def project_(self) -> None:
        """Move the images into the box and the ε-ball around the starting images (after a step).

        Only rows that left the constraint set are rewritten.
        """
        if not self.constrained:
            return
        images = self()
        projected = images
        if self.eps is not None:
            projected = project_lp_ball(projected, self.start, self.radius, self.norm)
        if self.clamp is not None:
            projected = projected.clamp(*self.clamp)
        self.set_images_(projected, (projected != images).flatten(1).any(1))
