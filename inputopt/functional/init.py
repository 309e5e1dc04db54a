"""Starting points whose randomness depends only on (seed, unit), not on the batch they share."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["row_seed", "row_seeds", "row_uniform", "seeded_ball_noise", "seeded_noise"]


def row_seed(seed: int, key: int, occurrence: int = 0) -> int:
    """A 63-bit seed derived from ``(seed, key, occurrence)``, stable across runs and platforms.

    Example:
        >>> row_seed(0, 7) == row_seed(0, 7) != row_seed(1, 7)
        True
    """
    digest = hashlib.blake2b(f"{seed}:{key}:{occurrence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def row_seeds(keys: Sequence[int], seed: int = 0) -> list[int]:
    """One seed per row from ``(seed, key, occurrence)``: rows with the same key get different seeds.

    Example:
        >>> a, b, c = row_seeds([4, 4, 7])
        >>> a != b and c == row_seeds([7])[0]
        True
    """
    seen: dict[int, int] = {}
    seeds = []
    for key in keys:
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        seeds.append(row_seed(seed, key, occurrence))
    return seeds


def row_uniform(seeds: Sequence[int], step: int, count: int) -> Tensor:
    """``(len(seeds), count)`` uniform numbers in [0, 1); row ``i`` depends only on ``(seeds[i], step)``.

    This is where random transforms draw their parameters: a unit's draws at a step are the same
    whatever batch, chunk, device or resume it runs in.

    Example:
        >>> u = row_uniform([11, 12], step=3, count=2)
        >>> torch.equal(u[1], row_uniform([12], step=3, count=2)[0])
        True
    """
    rows = [torch.rand(count, generator=torch.Generator().manual_seed(row_seed(s, step)), dtype=torch.float64)
            for s in seeds]
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
    rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(s)) for s in row_seeds(keys, seed)]
    return torch.stack(rows) * std + mean


def seeded_ball_noise(shape: Sequence[int], keys: Sequence[int], seed: int, eps: float,
                      norm: str = "Linf") -> Tensor:
    """Random points of the ε-ball around zero, ``(len(keys), *shape)``; row ``i`` depends only on ``(seed, keys[i])``.

    The random start of projected gradient attacks. L∞: every element uniform in ``[−eps, eps]``. L2: a
    uniformly random direction scaled to a length uniform in ``[0, eps]``.

    Example:
        >>> noise = seeded_ball_noise((1, 4, 4), keys=[0, 1], seed=0, eps=0.1, norm="L2")
        >>> bool((noise.flatten(1).norm(dim=1) <= 0.1).all())
        True
    """
    if norm not in ("Linf", "L2"):
        raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
    rows = []
    for s in row_seeds(keys, seed):
        generator = torch.Generator().manual_seed(s)
        if norm == "Linf":
            rows.append((torch.rand(tuple(shape), generator=generator) * 2 - 1) * eps)
        else:
            direction = torch.randn(tuple(shape), generator=generator)
            length = torch.rand((), generator=generator) * eps
            rows.append(direction / direction.norm().clamp_min(1e-12) * length)
    return torch.stack(rows)
