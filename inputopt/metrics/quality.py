"""Scores of the pictures themselves, as torchmetrics ``Metric`` s with functional twins.

- :class:`TransferAccuracy`: do independent networks see the target class in a class visualization?
- :class:`ActivationRatio`: what a visualization reaches on its unit, over the best natural image's.
- :class:`HighFrequencyEnergy`: the fraction of spectral energy above a cutoff frequency.
- :class:`Diversity`: the mean pairwise cosine distance of images in a layer's feature space.
- :class:`Plausibility`: how far images lie from real photographs in a reference network's feature space.

The metrics that run a network hold it outside their module tree (frozen, never in a state dict) and
take the images in pixel space, with the same optional ``mean``/``std`` normalization as a run. Their
states are sums, so torchmetrics syncs them across processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from inputopt.capture import OUTPUT, evaluate
from inputopt.functional.plausibility import plausibility_distance
from inputopt.metrics.topk import unit_scores

__all__ = ["ActivationRatio", "Diversity", "HighFrequencyEnergy", "Plausibility", "TransferAccuracy",
           "activation_ratio", "diversity", "high_frequency_energy", "plausibility_distance", "transfer_accuracy"]


# -- functional twins -------------------------------------------------------------------------------
def transfer_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """The fraction of images classified as their target class: ``(B, K)`` logits, or ``(N, B, K)`` for
    ``N`` networks (then one value per network).

    Example:
        >>> transfer_accuracy(torch.tensor([[0.1, 2.0], [3.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1, 1]))
        tensor(0.6667)
    """
    return (logits.argmax(-1) == targets.to(logits.device)).float().mean(-1)


def activation_ratio(scores: Tensor, dataset_max: Tensor) -> Tensor:
    """Per image, its unit's score over the unit's maximum over a data set's natural images: ``(B,)``.

    Scores are :func:`~inputopt.metrics.topk.unit_scores` (a channel's maximum over positions), the same
    score that ranks the dataset examples; 1 means "as strong as the best natural image".

    Example:
        >>> activation_ratio(torch.tensor([4.0, 1.0]), torch.tensor([2.0, 2.0]))
        tensor([2.0000, 0.5000])
    """
    return scores / dataset_max.to(scores.device)


def high_frequency_energy(images: Tensor, cutoff: float = 0.25) -> Tensor:
    """Per image, the fraction of its spectral energy at radial frequencies above ``cutoff``: ``(B,)``.

    With ``F = fft2(x − mean(x))`` per channel and the frequencies ``(f_y, f_x)`` of ``torch.fft.fftfreq``
    (cycles per pixel, Nyquist 0.5), the fraction is ``Σ_{‖f‖ > cutoff} |F|² / Σ |F|²``, summed over the
    channels. The mean (the DC term) is left out, so a constant image scores 0 (0/0 is taken as 0) and a
    checkerboard, all of whose energy is at ``‖f‖ = 0.5·√2``, scores 1. The default cutoff 0.25 is half
    the Nyquist frequency: a period shorter than 4 pixels.

    Args:
        images: ``(B, C, H, W)``.
        cutoff: radial frequency in cycles per pixel, in ``[0, 0.5·√2)``.

    Example:
        >>> checkerboard = (torch.arange(8).view(-1, 1) + torch.arange(8)) % 2
        >>> high_frequency_energy(torch.stack([torch.ones(1, 8, 8), checkerboard[None].float()]))
        tensor([0., 1.])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    if not 0 <= cutoff < 0.5 * 2 ** 0.5:
        raise ValueError(f"cutoff must be in [0, 0.707) cycles per pixel, got {cutoff!r}")
    x = images.float()
    x = x - x.mean((-2, -1), keepdim=True)
    energy = torch.fft.fft2(x).abs().square().sum(1)  # (B, H, W)
    fy = torch.fft.fftfreq(x.shape[-2], device=x.device).view(-1, 1)
    fx = torch.fft.fftfreq(x.shape[-1], device=x.device).view(1, -1)
    high = (fy.square() + fx.square()).sqrt() > cutoff
    total = energy.flatten(1).sum(1)
    above = (energy * high).flatten(1).sum(1)
    return torch.where(total > 0, above / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))


def diversity(features: Tensor) -> Tensor:
    """The mean cosine distance ``1 − cos(f_i, f_j)`` over all pairs ``i < j`` of flattened features.

    0 for identical directions, 1 on average for unrelated ones, up to 2 for opposite ones. Needs at
    least two images.

    Example:
        >>> diversity(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
        tensor(0.6667)
    """
    if features.shape[0] < 2:
        raise ValueError(f"diversity needs at least 2 images, got {features.shape[0]}")
    unit = nn.functional.normalize(features.flatten(1).double(), dim=1)
    cosine = unit @ unit.T
    i, j = torch.triu_indices(len(unit), len(unit), 1, device=unit.device)
    return (1 - cosine[i, j]).mean().float()


# -- metrics ------------------------------------------------------------------------------------------
def _networks(networks: str | nn.Module | Sequence[str | nn.Module], mean: Sequence[float] | None,
              std: Sequence[float] | None) -> list:
    """The :class:`~inputopt.networks.NetworkSpec` of each network, all with the normalization ``mean``/``std``."""
    from inputopt.networks import NetworkSpec

    items = list(networks) if isinstance(networks, (list, tuple)) else [networks]
    if not items:
        raise ValueError("give at least one network")
    return [NetworkSpec(n, mean=mean, std=std) for n in items]


class _NetworkMetric(Metric):
    """A metric that runs frozen networks, kept outside the module tree and moved with the metric."""

    full_state_update = False

    def __init__(self, networks: str | nn.Module | Sequence[str | nn.Module], mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        specs = _networks(networks, mean, std)
        object.__setattr__(self, "_networks", [spec.build(seed) for spec in specs])
        object.__setattr__(self, "_normalize", specs[0].normalization())

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        for module in [*self._networks, self._normalize]:
            if module is not None:
                module._apply(fn, *args, **kwargs)
        return self

    @torch.no_grad()
    def _activations(self, network: nn.Module, images: Tensor, layer: str | None) -> Tensor:
        return evaluate(network, images.float(), [layer or OUTPUT], self._normalize)[layer or OUTPUT]


class TransferAccuracy(_NetworkMetric):
    """The fraction of class visualizations that independent networks classify as their target class.

    Args:
        networks: one network or several (names for :func:`~inputopt.networks.build_network`, or modules);
            with several, :meth:`compute` gives one value per network, in order.
        mean: per-channel mean subtracted before the networks (with ``std``).
        std: per-channel standard deviation.

    Example:
        >>> metric = TransferAccuracy(["digits", "digits_b"])
        >>> from inputopt.data import Digits
        >>> images, labels = Digits("test", limit=20).tensors
        >>> metric.update(images, labels)
        >>> metric.compute()
        tensor([1., 1.])
    """

    higher_is_better = True

    def __init__(self, networks: str | nn.Module | Sequence[str | nn.Module], mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(networks, mean, std, **kwargs)
        self.add_state("correct", torch.zeros(len(self._networks), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: Tensor, targets: Tensor) -> None:
        """``images``: ``(B, C, H, W)`` in pixel space; ``targets``: ``(B,)`` target classes."""
        if targets.shape != images.shape[:1]:
            raise ValueError(f"targets must be (B,) for {images.shape[0]} images, got {tuple(targets.shape)}")
        logits = torch.stack([self._activations(net, images, None) for net in self._networks])
        self.correct += transfer_accuracy(logits, targets).double() * len(targets)
        self.total += len(targets)

    def compute(self) -> Tensor:
        """One fraction per network (a scalar for one network)."""
        return (self.correct / self.total).float().squeeze(0)


class ActivationRatio(_NetworkMetric):
    """What visualizations reach on their units, over the maximum over a data set's natural images: the
    mean of :func:`activation_ratio` over the images.

    A unit's score is its channel's maximum over positions (a feature's value for ``(B, F)`` layers), the
    score that ranks :class:`~inputopt.metrics.TopKExamples`: the dataset maximum of unit ``units[i]`` is
    ``TopKExamples.compute()["values"][i, 0]``, or ``values[0]`` of its row in the ``examples.json`` that
    ``inputopt examples`` writes.

    Args:
        network: the network (a name or a module).
        layer: dotted layer name (``None``: the output).
        dataset_max: each unit's dataset maximum, ``{unit: value}``.
        mean: per-channel mean subtracted before the network (with ``std``).
        std: per-channel standard deviation.

    Example:
        >>> metric = ActivationRatio("digits", "features.4", {3: 2.0})  # channel 3 reaches 2.0 at best
        >>> metric.update(torch.zeros(2, 1, 32, 32), torch.tensor([3, 3]))
        >>> metric.compute()  # a black image: 0.063 / 2.0
        tensor(0.0316)
    """

    higher_is_better = True

    def __init__(self, network: str | nn.Module, layer: str | None, dataset_max: Mapping[int, float],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(network, mean, std, **kwargs)
        if not isinstance(dataset_max, Mapping) or not dataset_max:
            raise ValueError(f"dataset_max must be a non-empty {{unit: value}} mapping, got {dataset_max!r}")
        bad = {u: v for u, v in dataset_max.items() if not float(v) > 0}
        if bad:
            raise ValueError(f"dataset maxima must be > 0 to divide by, got {bad}")
        self.layer = layer
        self.dataset_max = {int(u): float(v) for u, v in dataset_max.items()}
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: Tensor, units: Tensor | Sequence[int]) -> None:
        """``images``: ``(B, C, H, W)`` in pixel space; ``units``: ``(B,)``, the unit each image visualizes."""
        units = torch.as_tensor(units, dtype=torch.long).view(-1).cpu()
        missing = sorted(set(units.tolist()) - set(self.dataset_max))
        if missing or len(units) != images.shape[0]:
            raise ValueError(f"need one unit per image, each with a dataset maximum; units {units.tolist()}, "
                             f"{images.shape[0]} images, no maximum for {missing}")
        acts = self._activations(self._networks[0], images, self.layer)
        scores = unit_scores(acts, units)[0].diagonal()  # image i's score on its own unit
        maxima = torch.tensor([self.dataset_max[u] for u in units.tolist()], device=scores.device)
        self.total += activation_ratio(scores, maxima).double().sum()
        self.count += len(units)

    def compute(self) -> Tensor:
        """The mean ratio."""
        return (self.total / self.count).float()


class HighFrequencyEnergy(Metric):
    """The mean over images of :func:`high_frequency_energy`: the fraction of spectral energy (the mean
    excluded) at radial frequencies above ``cutoff`` cycles per pixel.

    Example:
        >>> metric = HighFrequencyEnergy(cutoff=0.25)
        >>> metric.update(torch.ones(3, 1, 16, 16))
        >>> metric.compute()
        tensor(0.)
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, cutoff: float = 0.25, **kwargs) -> None:
        super().__init__(**kwargs)
        high_frequency_energy(torch.zeros(1, 1, 1, 1), cutoff)  # checks the cutoff
        self.cutoff = cutoff
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: Tensor) -> None:
        """``images``: ``(B, C, H, W)``."""
        self.total += high_frequency_energy(images, self.cutoff).double().sum()
        self.count += images.shape[0]

    def compute(self) -> Tensor:
        """The mean fraction."""
        return (self.total / self.count).float()


class Diversity(_NetworkMetric):
    """The mean pairwise cosine distance of all the images seen, in a layer's feature space: the
    :func:`diversity` of their flattened features.

    The state is the sum of the unit-norm feature vectors ``s = Σ u_i``, the sum of their squared norms
    ``q = Σ ‖u_i‖²`` and their count ``n``: since ``Σ_{i≠j} cos(f_i, f_j) = ‖s‖² − q``, the mean over pairs is
    ``1 − (‖s‖² − q) / (n(n − 1))``. ``q`` is ``n`` but for features that are all zero (a dead ReLU layer), whose
    cosine with anything is 0, as in :func:`diversity`. All three sum across processes, so the memory does not
    grow with the number of images.

    Args:
        network: the network (a name or a module).
        layer: dotted layer name (``None``: the output).
        mean: per-channel mean subtracted before the network (with ``std``).
        std: per-channel standard deviation.

    Example:
        >>> metric = Diversity("digits", "features.4")
        >>> metric.update(torch.rand(1, 1, 32, 32).expand(3, -1, -1, -1))  # one image, three times
        >>> metric.compute().abs() < 1e-6
        tensor(True)
    """

    higher_is_better = True

    def __init__(self, network: str | nn.Module, layer: str | None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(network, mean, std, **kwargs)
        self.layer = layer
        self.add_state("direction_sum", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("square_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: Tensor) -> None:
        """``images``: ``(B, C, H, W)`` in pixel space."""
        features = self._activations(self._networks[0], images, self.layer).flatten(1).double()
        units = nn.functional.normalize(features, dim=1)
        self.direction_sum = units.sum(0) if self.direction_sum.numel() == 0 else self.direction_sum + units.sum(0)
        self.square_sum += units.square().sum()
        self.count += features.shape[0]

    def compute(self) -> Tensor:
        """The mean cosine distance over pairs (needs at least two images)."""
        n = self.count
        if n < 2:
            raise ValueError(f"Diversity needs at least 2 images, got {int(n)}")
        return (1 - (self.direction_sum.square().sum() - self.square_sum) / (n * (n - 1))).float()


class Plausibility(_NetworkMetric):
    """The mean :func:`~inputopt.functional.plausibility_distance` of images to real photographs in a reference
    network's feature space: how much visualizations look like photographs *to a network* (lower is more
    plausible).

    Transfer accuracy misses what this catches: images that another network classifies as their class by
    patterns no photograph has (streaks, saturated colour noise) lie far from every photograph in its
    features. Use a network other than the one optimized (e.g. an independently trained one) and a layer
    that summarizes the image (its global-pooled penultimate layer); the ``reference`` photographs should
    be of the same size as the images. The reference features are computed once, at construction.

    Args:
        network: the reference network (a name or a module).
        layer: dotted layer name whose output are the features (``None``: the output).
        reference: ``(N, C, H, W)`` real photographs in pixel space.
        k: how many nearest photographs each image's distance averages over.
        mean: per-channel mean subtracted before the network (with ``std``).
        std: per-channel standard deviation.

    Example:
        >>> from inputopt.data import Digits
        >>> photos, _ = Digits("test", limit=50).tensors
        >>> metric = Plausibility("digits_b", "features.4", photos[:40])
        >>> metric.update(photos[40:])        # real digits the reference has not seen
        >>> real = metric.compute()
        >>> metric.reset()
        >>> metric.update(torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(0)))  # noise
        >>> bool(metric.compute() > real)
        True
    """

    higher_is_better = False

    def __init__(self, network: str | nn.Module, layer: str | None, reference: Tensor, k: int = 1,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(network, mean, std, **kwargs)
        if not isinstance(reference, Tensor) or reference.ndim != 4 or reference.shape[0] < 1:
            raise ValueError(f"reference must be photographs (N, C, H, W), got "
                             f"{tuple(getattr(reference, 'shape', ())) or type(reference).__name__}")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= reference.shape[0]:
            raise ValueError(f"k must be an int in [1, {reference.shape[0]}] (the number of reference photographs), "
                             f"got {k!r}")
        self.layer, self.k = layer, k
        features = torch.cat([self._activations(self._networks[0], chunk, layer).flatten(1)
                              for chunk in reference.split(64)])
        self.register_buffer("reference_features", features, persistent=False)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: Tensor) -> None:
        """``images``: ``(B, C, H, W)`` in pixel space."""
        features = self._activations(self._networks[0], images, self.layer).flatten(1)
        self.total += plausibility_distance(features, self.reference_features, self.k).double().sum()
        self.count += images.shape[0]

    def compute(self) -> Tensor:
        """The mean distance over the images seen."""
        return (self.total / self.count).float()
