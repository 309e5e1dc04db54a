"""Random points on spheres around inputs, for the "is a random perturbation as harmful" check."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["random_sphere_points", "sphere_check", "sphere_label_change"]


def random_sphere_points(center: Tensor, radius: float | Tensor, n: int,
                         generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` points uniformly on the sphere of a given radius around one input.

    Directions are normalized Gaussian vectors (uniform on the sphere); the distance is the Euclidean
    norm over all elements of the input.

    Args:
        center: one input of any shape, e.g. ``(C, H, W)``.
        radius: the sphere's radius (> 0).
        n: number of points.
        generator: random generator, for reproducible points.

    Returns:
        Tensor of shape ``(n, *center.shape)`` whose rows all lie at distance ``radius`` from ``center``.

    Example:
        >>> x = torch.zeros(3, 4, 4)
        >>> p = random_sphere_points(x, 2.0, 5, torch.Generator().manual_seed(0))
        >>> torch.allclose((p - x).flatten(1).norm(dim=1), torch.full((5,), 2.0))
        True
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    radius = torch.as_tensor(radius, dtype=torch.float64)
    if radius.numel() != 1 or radius.item() <= 0:
        raise ValueError(f"radius must be one positive number, got {radius.tolist()}")
    direction = torch.randn((n, center.numel()), generator=generator, dtype=torch.float64,
                            device=generator.device if generator is not None else "cpu")
    direction = direction / direction.norm(dim=1, keepdim=True)
    offset = (direction * radius.item()).to(device=center.device, dtype=center.dtype)
    return center.unsqueeze(0) + offset.view(n, *center.shape)


@torch.no_grad()
def sphere_label_change(classify: Callable[[Tensor], Tensor], center: Tensor, radius: float, n: int = 1000,
                        generator: torch.Generator | None = None, chunk_size: int = 250) -> float:
    """Fraction of ``n`` random points on a sphere around ``center`` whose predicted label differs from
    the label predicted at ``center``.

    With ``radius = 2·‖x − x̃‖`` (``x̃`` an adversarial example of ``x``) this checks that a random
    perturbation twice as large as the adversarial one almost never changes the label.

    Args:
        classify: maps a batch of inputs ``(N, *center.shape)`` to predicted labels ``(N,)``.
        center: one input.
        radius: the sphere's radius (> 0).
        n: number of random points.
        generator: random generator, for reproducible points.
        chunk_size: points classified per forward pass.

    Returns:
        The fraction of points whose label changed, in [0, 1].

    Example:
        >>> classify = lambda x: (x.flatten(1).sum(1) > 0).long()
        >>> sphere_label_change(classify, torch.full((4,), 10.0), radius=1.0, n=100)
        0.0
    """
    if n < 1 or chunk_size < 1:
        raise ValueError(f"n and chunk_size must be >= 1, got n={n}, chunk_size={chunk_size}")
    label = classify(center.unsqueeze(0))[0]
    changed = 0
    for start in range(0, n, chunk_size):
        points = random_sphere_points(center, radius, min(chunk_size, n - start), generator)
        changed += int((classify(points) != label).sum())
    return changed / n


@torch.no_grad()
def sphere_check(classify: Callable[[Tensor], Tensor], x: Tensor, x_adv: Tensor, factor: float = 2.0,
                 n: int = 1000, seed: int = 0, chunk_size: int = 250,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
    """The random-sphere check for a batch: is a random perturbation ``factor`` times as large as the
    adversarial one as harmful?

    For each image ``i``: ``n`` random points on the sphere centred on ``x[i]`` with radius
    ``factor·‖x[i] − x_adv[i]‖``, and the fraction whose predicted label differs from the one at ``x[i]``.

    Args:
        classify: maps inputs to predicted labels.
        x: the original inputs ``(B, ...)``.
        x_adv: their adversarial versions, same shape.
        factor: the radius as a multiple of the adversarial perturbation's norm.
        n: random points per image.
        seed: seed of the random points (one generator for the whole batch).
        chunk_size: points classified per forward pass.
        progress: show a progress bar over the images.

    Returns:
        ``(fractions, radii)``, each ``(B,)``; the fraction is NaN for an image that did not move.

    Example:
        >>> classify = lambda z: (z.flatten(1).sum(1) > 0).long()
        >>> x = torch.full((2, 4), 1.0)
        >>> fractions, radii = sphere_check(classify, x, x - 0.1, factor=2.0, n=100)
        >>> radii
        tensor([0.4000, 0.4000])
    """
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    if factor <= 0:
        raise ValueError(f"factor must be > 0, got {factor}")
    radii = factor * (x_adv - x).flatten(1).norm(dim=1)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    pairs = tqdm(list(zip(x, radii.tolist())), desc="random-sphere check", unit="image", disable=not progress)
    fractions = [sphere_label_change(classify, center, radius, n, generator, chunk_size) if radius > 0
                 else float("nan") for center, radius in pairs]
    return torch.tensor(fractions), radii.cpu()
