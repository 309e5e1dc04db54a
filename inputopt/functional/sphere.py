"""Random points on spheres around inputs, for the "is a random perturbation as harmful" check."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["random_sphere_points", "sphere_check", "sphere_label_change", "sphere_label_changes"]


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
def sphere_label_changes(classify: Callable[[Tensor], Tensor], centers: Tensor, radii: Tensor | Sequence[float],
                         n: int = 1000, generators: torch.Generator | Sequence[torch.Generator] | None = None,
                         labels: Tensor | None = None, chunk_size: int = 250,
                         clip: tuple[float, float] | None = None,
                         on_points: Callable[[int], None] | None = None) -> Tensor:
    """For each centre, the fraction of ``n`` random points on the sphere of its radius whose predicted label
    differs from the centre's.

    The points are not clipped to the box of valid inputs by default: they lie exactly on the sphere, and
    some of their pixels may fall outside ``[0, 1]``. With ``clip=(low, high)`` every point is clamped into
    the box before it is classified, so that the network only sees valid images; a clamped point lies at a
    distance of at most the radius (never more) from its centre, when the centre is in the box.

    The points of several centres share forward passes (up to ``chunk_size`` points each), while each
    centre draws its own points, ``chunk_size`` at a time, from its own generator: with one generator per
    centre, a centre's points do not depend on the others in the batch.

    Args:
        classify: maps a batch of inputs ``(N, *centers.shape[1:])`` to predicted labels ``(N,)``.
        centers: the inputs ``(B, ...)``.
        radii: ``(B,)`` radii; a centre with radius ``<= 0`` gets NaN and draws nothing.
        n: random points per centre.
        generators: one generator per centre, one shared by all (drawn centre after centre), or None.
        labels: the labels at the centres (default: ``classify(centers)``).
        chunk_size: points classified per forward pass.
        clip: ``(low, high)``: clamp the points into this box; ``None`` (default): points exactly on the sphere.
        on_points: called with the number of points just classified, after every forward pass (a progress
            bar's ``update``; it may raise to stop the check).

    Returns:
        ``(B,)`` fractions in [0, 1] (float64), NaN where the radius is not positive.

    Example:
        >>> classify = lambda x: (x.flatten(1).sum(1) > 0).long()
        >>> sphere_label_changes(classify, torch.tensor([[10.0, 10.0], [0.0, 0.1]]), [1.0, 0.0], n=50)
        tensor([0., nan], dtype=torch.float64)
    """
    if n < 1 or chunk_size < 1:
        raise ValueError(f"n and chunk_size must be >= 1, got n={n}, chunk_size={chunk_size}")
    if clip is not None and not (len(clip) == 2 and clip[0] < clip[1]):
        raise ValueError(f"clip must be (low, high) with low < high, or None, got {clip!r}")
    radii = torch.as_tensor(radii, dtype=torch.float64).flatten().tolist()
    if len(radii) != len(centers):
        raise ValueError(f"need one radius per centre: {len(centers)} centres, {len(radii)} radii")
    if generators is None or isinstance(generators, torch.Generator):
        generators = [generators] * len(centers)
    elif len(generators) != len(centers):
        raise ValueError(f"need one generator per centre: {len(centers)} centres, {len(generators)} generators")
    labels = classify(centers) if labels is None else labels
    changed = torch.zeros(len(centers), dtype=torch.float64)
    pending: list[tuple[int, Tensor]] = []

    def flush() -> None:
        if pending:
            owners = torch.cat([torch.full((len(p),), i) for i, p in pending])
            differs = (classify(torch.cat([p for _, p in pending])) != labels[owners.to(labels.device)]).cpu()
            changed.index_add_(0, owners, differs.double())
            pending.clear()
            if on_points is not None:
                on_points(len(owners))

    for i, (center, radius) in enumerate(zip(centers, radii)):
        if radius <= 0:
            continue
        for start in range(0, n, chunk_size):
            points = random_sphere_points(center, radius, min(chunk_size, n - start), generators[i])
            if clip is not None:
                points = points.clamp(clip[0], clip[1])
            if sum(len(p) for _, p in pending) + len(points) > chunk_size:
                flush()
            pending.append((i, points))
    flush()
    fractions = changed / n
    fractions[torch.tensor(radii, dtype=torch.float64) <= 0] = float("nan")
    return fractions


def sphere_label_change(classify: Callable[[Tensor], Tensor], center: Tensor, radius: float, n: int = 1000,
                        generator: torch.Generator | None = None, chunk_size: int = 250) -> float:
    """Fraction of ``n`` random points on a sphere around ``center`` whose predicted label differs from
    the label predicted at ``center``.

    With ``radius = 2·‖x − x̃‖`` (``x̃`` an adversarial example of ``x``) this checks that a random
    perturbation twice as large as the adversarial one almost never changes the label. One centre of
    :func:`sphere_label_changes`.

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
    if not radius > 0:
        raise ValueError(f"radius must be one positive number, got {radius}")
    return sphere_label_changes(classify, center.unsqueeze(0), [radius], n, generator, None, chunk_size).item()


@torch.no_grad()
def sphere_check(classify: Callable[[Tensor], Tensor], x: Tensor, x_adv: Tensor, factor: float = 2.0,
                 n: int = 1000, seed: int = 0, chunk_size: int = 250,
                 progress: bool = False, clip: tuple[float, float] | None = None) -> tuple[Tensor, Tensor]:
    """The random-sphere check for a batch: is a random perturbation ``factor`` times as large as the
    adversarial one as harmful?

    For each image ``i``: ``n`` random points on the sphere centred on ``x[i]`` with radius
    ``factor·‖x[i] − x_adv[i]‖``, and the fraction whose predicted label differs from the one at ``x[i]``.
    The points are not clipped to the box of valid images unless ``clip`` is given (see
    :func:`sphere_label_changes`): by default they lie exactly on the sphere.

    Args:
        classify: maps inputs to predicted labels.
        x: the original inputs ``(B, ...)``.
        x_adv: their adversarial versions, same shape.
        factor: the radius as a multiple of the adversarial perturbation's norm.
        n: random points per image.
        seed: seed of the random points (one generator for the whole batch).
        chunk_size: points classified per forward pass.
        progress: show a progress bar over the random points (updated after every forward pass: a large
            image's thousand points show their progress, not "0/1 image" for minutes).
        clip: ``(low, high)``: clamp the points into this box before classifying them (default: not clipped).

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
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of random points must be an int >= 1, got {n!r}")
    radii = factor * (x_adv - x).flatten(1).norm(dim=1)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    labels = classify(x)
    group = max(1, chunk_size // n)  # images whose points fill one forward pass
    fractions = []
    moving = int((radii > 0).sum())  # an image that did not move draws no point
    with tqdm(total=moving * n, desc="random-sphere check", unit="point", disable=not progress) as bar:
        for i in range(0, len(x), group):
            fractions.append(sphere_label_changes(classify, x[i:i + group], radii[i:i + group], n, generator,
                                                  labels[i:i + group], chunk_size, clip, on_points=bar.update))
    return torch.cat(fractions).float(), radii.cpu()
