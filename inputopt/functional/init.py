"""Starting points whose randomness depends only on (seed, unit), not on the batch they share."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inputopt.functional.random import RowRandom, RowStream

__all__ = ["row_uniform", "seeded_ball_noise", "seeded_noise"]


def row_uniform(seeds: Sequence[int], step: int, count: int) -> Tensor:
    """``(len(seeds), count)`` uniform numbers in [0, 1); row ``i`` depends only on ``(seeds[i], step)``.

    This is where random transforms draw their parameters (the ``"transforms"`` stream, keyed by the row's
    seed and the step): a unit's draws at a step are the same whatever batch, chunk, device or resume it
    runs in.

    Example:
        >>> u = row_uniform([11, 12], step=3, count=2)
        >>> torch.equal(u[1], row_uniform([12], step=3, count=2)[0])
        True
    """
    rows = [RowRandom(s).stream("transforms").uniform([step], (count,), dtype=torch.float64)[0] for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, count, dtype=torch.float64)


def seeded_noise(shape: Sequence[int], keys: Sequence[int], seed: int = 0, mean: float = 0.0,
                 std: float = 0.01) -> Tensor:
    """Gaussian noise of shape ``(len(keys), *shape)``; row ``i`` depends only on ``(seed, keys[i])``.

    Rows with the same key get different noise (the key's occurrence count is part of the seed), so a
    unit repeated in a batch still gets distinct starting points.

    Args:
        shape: the shape of one image, ``(C, H, W)``.
        keys: one integer per row naming what the row targets (e.g. its unit).
        seed: the run's seed.
        mean: mean of the noise.
        std: standard deviation of the noise.

    Example:
        >>> a = seeded_noise((3, 8, 8), keys=[5, 9], seed=0)
        >>> b = seeded_noise((3, 8, 8), keys=[9], seed=0)
        >>> torch.equal(a[1], b[0])
        True
    """
    if len(keys) == 0:
        raise ValueError("seeded_noise needs at least one key (one per image)")
    return RowRandom(seed).stream("start").normal(keys, shape) * std + mean


def seeded_ball_noise(shape: Sequence[int], keys: Sequence[int], stream: RowStream, eps: float,
                      norm: str = "Linf") -> Tensor:
    """Random points of the ε-ball around zero, ``(len(keys), *shape)``; row ``i`` depends only on ``keys[i]`` in
    ``stream`` (a :class:`~inputopt.functional.random.RowStream`).

    The random start of projected gradient attacks. L∞: every element uniform in ``[−eps, eps]``. L2: a
    uniformly random direction scaled to a length uniform in ``[0, eps]``.

    Example:
        >>> noise = seeded_ball_noise((1, 4, 4), [0, 1], RowRandom(0).stream("pgd.start"), eps=0.1, norm="L2")
        >>> bool((noise.flatten(1).norm(dim=1) <= 0.1).all())
        True
    """
    if norm not in ("Linf", "L2"):
        raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
    rows = []
    for s in stream.seeds(keys):
        generator = torch.Generator().manual_seed(s)
        if norm == "Linf":
            rows.append((torch.rand(tuple(shape), generator=generator) * 2 - 1) * eps)
        else:
            direction = torch.randn(tuple(shape), generator=generator)
            length = torch.rand((), generator=generator) * eps
            rows.append(direction / direction.norm().clamp_min(1e-12) * length)
    return torch.stack(rows)
