"""Checks that say whether a feature visualization can be trusted, run on each unit for you.

A visualization is a picture the reader is asked to believe. Geirhos et al. 2023 ("Don't trust your eyes")
build networks whose visualizations show anything and find that networks process visualizations along
other paths than natural images; Fel et al. 2023 and Hamblin et al. 2024 find the usual methods far from
real images. These checks compare each visualization with a data set of natural images seen through the
same network, and say, per unit, which pictures to believe:

- ``transfer``: an independent network (``transfer_network``) puts the visualization in the unit's class
  (a class unit: a unit of the output layer), or in the class it gives at least 3/4 of the unit's top
  natural examples (any other unit; a unit whose top examples share no class is not checked). Run only
  with a transfer network.
- ``strength``: the unit's score on the visualization over its best score on a natural image (a channel's
  score is its maximum over positions, as for dataset examples). Far above 1 means the picture drives
  the unit by something no natural image has: off-distribution.
- ``path``: whether the network reaches the unit along the path of its natural examples (after Geirhos et
  al. 2023), in two numbers on the scale where the top natural examples score 1, the lower one the check's:
  *similarity*, in the network's earlier layers (``path_layers``): the fraction of random natural images
  that are less similar to the unit's top natural examples than the visualization is (averaged over the
  layers), relative to the same fraction for the top examples themselves (each against the others); and
  *carried*: the share of the visualization's score that arrives through the input of the unit's layer
  (gradient times input, ``Σ ∂u/∂x · x``; a convolution's score less its bias), relative to that share for
  the unit's best natural examples. A picture seen along its examples' path scores about 1 or more on
  both; one that drives the unit by a road around its earlier layers (a manipulated network's detector)
  has a low *carried*, even when its earlier layers see what they see in natural images.
- ``plausibility``: the cosine distance of the visualization to the nearest natural image in a reference
  network's features (:func:`~inputopt.functional.plausibility_distance`; the transfer network's, when
  given). Lower is more like a natural image.
- ``high frequency``: the fraction of the visualization's spectral energy above a quarter cycle per pixel
  (:func:`~inputopt.metrics.high_frequency_energy`); natural images have little.
- ``seeds``: with the visualizations of the same units from other seeds (``seed_images``), how similar
  they are in the unit's layer: the fraction of pairs of random natural images that are less alike. Costs a visualization per extra seed, so it is not in the default set.

Activations are compared by their *profile*: a layer's activations averaged over positions (a feature
vector for ``(B, F)`` layers), minus the natural images' mean profile, so that a picture is judged by which
features it excites, wherever they are. The thresholds (:data:`THRESHOLDS`) are in ``docs/trust.md``
with the measurements that chose them.

:func:`visualization_checks` runs the checks; :func:`visualization_checks_table` writes the table;
:func:`checkerboard_trap` builds a deliberately manipulated network whose unit fails them.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.attacks.checks import CheckResult
from inputopt.capture import OUTPUT, evaluate, resolve_layer
from inputopt.functional.plausibility import plausibility_distance
from inputopt.metrics.quality import high_frequency_energy

__all__ = ["CARRIED_EXAMPLES", "CHECKS", "DEFAULT_CHECKS", "THRESHOLDS", "UnitChecks", "checkerboard_trap",
           "path_layers",            "visualization_checks", "visualization_checks_json", "visualization_checks_table"]

#: Every check, in table order.
CHECKS = ("transfer", "strength", "path", "plausibility", "high frequency", "seeds")
#: The checks run by default: each costs a forward pass of the images (no extra optimization).
DEFAULT_CHECKS = ("transfer", "strength", "path", "plausibility", "high frequency")
#: How many of a unit's top natural examples give the ``path`` check's reference share (each costs a forward
#: and a backward pass to the unit's layer).
CARRIED_EXAMPLES = 4
#: Pass thresholds: ``strength`` at most, ``path`` at least (its similarity and its carried share, each),
#: ``plausibility`` at most, ``high frequency`` at most, ``seeds`` at least. ``docs/trust.md`` gives the
#: measurements behind them.
THRESHOLDS = {"strength": 4.0, "path": 0.5, "plausibility": 0.5, "high frequency": 0.2, "seeds": 0.5}


@dataclass
class UnitChecks:
    """The checks of one unit's visualization.

    Attributes:
        name: the image's name (e.g. ``features.4-3``).
        unit: the unit.
        results: one :class:`~inputopt.attacks.checks.CheckResult` per check run.
    """

    name: str
    unit: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check run passed."""
        return all(r.passed for r in self.results)

    def __getitem__(self, check: str) -> CheckResult:
        for result in self.results:
            if result.name == check:
                return result
        raise KeyError(f"no check {check!r} was run on {self.name}; run: {[r.name for r in self.results]}")


def _profile(activations: Tensor) -> Tensor:
    """A layer's activations averaged over positions: ``(B, C)`` from ``(B, C, H, W)``, ``(B, N, D)`` tokens
    averaged over tokens, ``(B, F)`` as is."""
    x = activations.float()
    if x.ndim == 4:
        return x.mean((2, 3))
    if x.ndim == 3:
        return x.mean(1)
    return x.flatten(1)


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    """All cosine similarities of the rows of ``a`` with those of ``b``: ``(len(a), len(b))``."""
    return F.normalize(a.double(), dim=1) @ F.normalize(b.double(), dim=1).T


def _mean_offdiagonal(similarity: Tensor) -> float:
    n = similarity.shape[0]
    if n < 2:
        return float("nan")
    return ((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))).item()


def path_layers(network: nn.Module, layer: str | None, count: int = 3) -> list[str]:
    """``count`` convolution or linear layers before ``layer`` in ``network.named_modules()`` order, spread
    evenly from the first (for the ``path`` check): its earlier layers. For the output (``None``), those
    before the last one.

    Example:
        >>> from inputopt.zoo import digits_cnn
        >>> path_layers(digits_cnn("a"), "features.7")
        ['features.0', 'features.4']
        >>> path_layers(digits_cnn("a"), None)
        ['features.0', 'features.7', 'classifier.1']
    """
    names, reached = [], False
    for name, module in network.named_modules():
        if name and name == layer:
            reached = True
            break
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            names.append(name)
    if not reached and names:  # the output: its last layer is the unit's own
        names = names[:-1]
    if len(names) <= count:
        return names
    return [names[round(i * (len(names) - 1) / (count - 1))] for i in range(count)] if count > 1 else names[-1:]


def _summaries(network: nn.Module, images: Tensor, layers: Sequence[str], maxima: str | None,
               normalize: nn.Module | None, batch_size: int = 64) -> dict[str, Tensor]:
    """The evaluation forward of ``images`` in chunks, kept small on the CPU in float32: each of ``layers``'
    profile (:func:`_profile`), and under ``"maxima"`` the unit scores of every unit of layer ``maxima`` (a
    channel's maximum over positions, a feature's value: :func:`~inputopt.metrics.topk.unit_scores` of all units)."""
    wanted = list(dict.fromkeys([*layers, *([maxima] if maxima is not None else [])]))
    out: dict[str, list[Tensor]] = {name: [] for name in [*layers, "maxima"]}
    device = next((p.device for p in network.parameters()), images.device)
    with torch.no_grad():
        for chunk in images.split(batch_size):
            captured = evaluate(network, chunk.to(device).float(), wanted, normalize)
            for name in layers:
                out[name].append(_profile(captured[name]).cpu())
            if maxima is not None:
                acts = captured[maxima]
                if acts.ndim not in (2, 4):
                    raise ValueError(f"unit scores need a (B, C, H, W) or (B, F) layer output; {maxima!r} gives "
                                     f"{tuple(acts.shape)}")
                out["maxima"].append((acts.flatten(2).max(2).values if acts.ndim == 4 else acts).float().cpu())
    return {name: torch.cat(values) for name, values in out.items() if values}


#: What the checks computed from natural images, kept for later calls with the same natural images: per
#: natural data set (or tensor, by identity), its stacked images and their summaries per network, layers and
#: normalization; an entry goes when its natural images do.
_NATURAL: dict[int, tuple[weakref.ref, dict]] = {}
_ENTRIES = 16  # summaries kept per natural data set, the oldest dropped first


def _natural_cache(natural: Any) -> dict | None:
    """The cache of ``natural`` (``None`` for an object that takes no weak reference: not cached)."""
    key = id(natural)
    entry = _NATURAL.get(key)
    if entry is not None and entry[0]() is natural:
        return entry[1]

    def forget(ref: weakref.ref, key: int = key) -> None:
        if _NATURAL.get(key, (None,))[0] is ref:
            del _NATURAL[key]

    try:
        ref = weakref.ref(natural, forget)
    except TypeError:
        return None
    _NATURAL[key] = (ref, {})
    return _NATURAL[key][1]


def _state(module: nn.Module | None) -> tuple:
    """What identifies a module's weights as they are now: the module and its tensors' in-place versions."""
    if module is None:
        return ()
    return id(module), sum(t._version for t in (*module.parameters(), *module.buffers()))


def _natural_summaries(natural: Any, images: Tensor, num_natural: int | None, network: nn.Module,
                       layers: Sequence[str], maxima: str | None, normalize: nn.Module | None) -> dict[str, Tensor]:
    """:func:`_summaries` of the natural ``images`` (taken from ``natural``), computed once per natural data,
    network (as its weights are), layers and normalization, and kept for the next call."""
    cache = _natural_cache(natural)
    key = ("summaries", num_natural, getattr(natural, "_version", 0), _state(network), _state(normalize),
           tuple(layers), maxima)
    if cache is not None and key in cache:
        owner, norm, value = cache[key]
        if owner() is network and (norm() if norm is not None else None) is normalize:
            return value
    value = _summaries(network, images, layers, maxima, normalize)
    if cache is not None:
        cache[key] = (weakref.ref(network), weakref.ref(normalize) if normalize is not None else None, value)
        while len([k for k in cache if k[0] == "summaries"]) > _ENTRIES:
            del cache[next(k for k in cache if k[0] == "summaries")]
    return value


def _input_module(network: nn.Module, layer: str) -> nn.Module:
    """The module whose input the ``path`` check's ``carried`` share reads: the unit's layer itself, or for the
    output (``""``) the last convolution or linear layer (the network's own input is the pixels)."""
    if layer != OUTPUT:
        return resolve_layer(network, layer)
    last = [m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return last[-1] if last else network


def _carried(network: nn.Module, layer: str, images: Tensor, units: Sequence[int], normalize: nn.Module | None,
             batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Each image's part of its unit's score that the unit's layer's input carries, ``c``, and the score ``u``:
    ``c`` is the sum of gradient times input, ``Σ ∂u/∂x · x`` over the input ``x`` of the unit's layer (for a
    convolution or a linear layer, ``u`` less its bias; for a piecewise-linear stack, ``u`` less its biases'
    share; what reaches the unit around that input, none of it). Both ``(N,)`` on the CPU; ``c`` is NaN where
    the layer's input is not a tensor."""
    module = _input_module(network, layer)
    device = next((p.device for p in network.parameters()), images.device)
    units_t = torch.as_tensor(list(units), dtype=torch.long)
    carried, scores = [], []
    with torch.inference_mode(False), torch.enable_grad():
        for chunk, unit_chunk in zip(images.split(batch_size), units_t.split(batch_size)):
            seen: dict[str, Tensor] = {}

            def keep(_module: nn.Module, args: tuple) -> None:
                if "input" not in seen and args and isinstance(args[0], Tensor):
                    seen["input"] = args[0]

            handle = module.register_forward_pre_hook(keep)
            try:
                x = chunk.to(device).float().clone().requires_grad_(True)
                out = evaluate(network, x, [layer], normalize)[layer]
            finally:
                handle.remove()
            rows = torch.arange(len(chunk), device=out.device)
            chosen = out[rows, unit_chunk.to(out.device)]  # each image's own unit, as unit_scores reads it
            u = chosen.flatten(1).max(1).values if chosen.ndim > 1 else chosen
            source = seen.get("input")
            if source is None or not source.requires_grad:
                carried.append(torch.full((len(chunk),), math.nan))
            else:
                grad = torch.autograd.grad(u.sum(), source)[0]
                carried.append((grad * source).flatten(1).sum(1).detach().float().cpu())
            scores.append(u.detach().float().cpu())
    return torch.cat(carried), torch.cat(scores)


def _natural_images(natural: Tensor | Any, limit: int | None) -> Tensor:
    """``(N, C, H, W)`` natural images from a tensor or a data set of ``(image, label)`` samples (a data set's
    stacked once and kept)."""
    cache = None if isinstance(natural, Tensor) else _natural_cache(natural)  # a tensor's slice would keep it alive
    key = ("images", limit)
    if cache is not None and key in cache:
        return cache[key]
    if isinstance(natural, Tensor):
        images = natural
    else:
        count = len(natural) if limit is None else min(limit, len(natural))
        samples = (natural[i] for i in range(count))
        images = torch.stack([torch.as_tensor(s[0] if isinstance(s, (tuple, list)) else s) for s in samples])
    if limit is not None:
        images = images[:limit]
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"natural must hold at least 2 images (N, C, H, W), got shape {tuple(images.shape)}")
    images = images.float()
    if cache is not None:
        cache[key] = images
    return images


def _relative(similarity: float, top: float, random: float) -> float:
    """``similarity`` on the scale where ``random`` is 0 and ``top`` is 1."""
    spread = top - random
    return (similarity - random) / spread if spread > 1e-9 else float("nan")


def visualization_checks(
    network: nn.Module,
    layer: str | None,
    units: Sequence[int],
    images: Tensor,
    natural: Tensor | Any,
    *,
    names: Sequence[str] | None = None,
    normalize: nn.Module | None = None,
    transfer_network: nn.Module | None = None,
    plausibility_layer: str | None = None,
    layers: Sequence[str] | None = None,
    seed_images: Tensor | None = None,
    checks: Sequence[str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    top_k: int = 8,
    num_natural: int | None = 512,
    high_frequency_cutoff: float = 0.25,
    seed: int = 0,
) -> list[UnitChecks]:
    """Run the visualization checks on the visualizations ``images`` of ``units`` of ``network``'s ``layer``.

    Args:
        network: the visualized network (frozen), taking the images after ``normalize``.
        layer: the units' layer (``None`` or ``""``: the output; its units are classes).
        units: ``(B,)`` the unit each image visualizes (a channel of a ``(B, C, H, W)`` layer, a feature).
        images: ``(B, C, H, W)`` the visualizations, in pixel space.
        natural: natural images in pixel space, the same size as ``images``: a ``(N, C, H, W)`` tensor or a
            data set of ``(image, label)`` samples (e.g. :class:`~inputopt.data.Digits`,
            :class:`~inputopt.data.PhotoCrops`).
        names: the images' names (default ``<layer>-<unit>``).
        normalize: the normalization in front of both networks (``None``: none).
        transfer_network: an independently trained network with the same classes, for ``transfer`` and
            for ``plausibility``'s features.
        plausibility_layer: the layer whose features ``plausibility`` compares (of the transfer network
            when given, else of ``network``); ``None``: the last ``path`` layer's profile.
        layers: the earlier layers of ``path`` (default: :func:`path_layers`).
        seed_images: ``(S, B, C, H, W)``: the same units visualized with ``S`` other seeds, for ``seeds``.
        checks: which checks to run (default :data:`DEFAULT_CHECKS`, and ``seeds`` when ``seed_images``
            is given); ``transfer`` is left out without a transfer network.
        thresholds: overrides of :data:`THRESHOLDS`.
        top_k: how many top natural examples of each unit the checks compare with.
        num_natural: use at most this many natural images (the first ones; ``None``: all).
        high_frequency_cutoff: the cutoff of ``high frequency``, in cycles per pixel.
        seed: the seed of the random natural images of the ``path`` and ``seeds`` baselines.

    The natural images' summaries (each unit's score, the layers' profiles, the transfer network's classes
    and features) are computed once per natural data, network (as its weights are), layers and
    normalization, and kept for later calls: a call on other units or other pictures with the same natural
    images costs a forward of its pictures and the ``path`` check's passes (a forward and backward of each
    picture and of each unit's :data:`CARRIED_EXAMPLES` best natural examples, to the unit's layer). A tensor
    changed in place is read again.

    Returns:
        One :class:`UnitChecks` per image, in order.

    Example:
        >>> from inputopt.data import Digits
        >>> from inputopt.zoo import digits_cnn
        >>> natural = Digits("test", limit=64)
        >>> images = natural.tensors[0][:2]                     # two real digits as "visualizations"
        >>> result = visualization_checks(digits_cnn("a"), "features.4", [0, 1], images, natural)
        >>> [r.name for r in result[0].results]
        ['strength', 'path', 'plausibility', 'high frequency']
        >>> result[0]["high frequency"].passed
        True
    """
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    unknown = sorted(set(thresholds) - set(THRESHOLDS))
    if unknown:
        raise ValueError(f"unknown thresholds {unknown}; valid: {list(THRESHOLDS)}")
    if checks is None:
        checks = [*DEFAULT_CHECKS, *(["seeds"] if seed_images is not None else [])]
    bad = [c for c in checks if c not in CHECKS]
    if bad or isinstance(checks, str):
        raise ValueError(f"unknown checks {bad or checks!r}; valid: {list(CHECKS)}")
    if transfer_network is None:
        checks = [c for c in checks if c != "transfer"]
    if "seeds" in checks and seed_images is None:
        raise ValueError("the 'seeds' check needs seed_images: the units visualized with other seeds")
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    units = [int(u) for u in torch.as_tensor(units).view(-1).tolist()]
    if len(units) != images.shape[0]:
        raise ValueError(f"need one unit per image: {len(units)} units for {images.shape[0]} images")
    if seed_images is not None and (seed_images.ndim != 5 or seed_images.shape[1:] != images.shape):
        raise ValueError(f"seed_images must be (S, {', '.join(map(str, images.shape))}), got "
                         f"{tuple(seed_images.shape)}")
    layer = layer or OUTPUT
    names = list(names) if names is not None else [f"{layer or 'output'}-{u}" for u in units]
    natural_images = _natural_images(natural, num_natural)
    if natural_images.shape[1:] != images.shape[1:]:
        raise ValueError(f"the natural images are {tuple(natural_images.shape[1:])} but the visualizations "
                         f"{tuple(images.shape[1:])}: give natural images of the visualizations' size")
    top_k = max(2, min(top_k, natural_images.shape[0]))
    earlier = list(layers) if layers is not None else path_layers(network, layer or None)
    for name in earlier:
        resolve_layer(network, name)
    if "path" in checks and not earlier:
        raise ValueError(f"the 'path' check needs earlier layers than {layer!r}; give layers=[...]")
    plaus_net = transfer_network if transfer_network is not None else network
    plaus_layer = plausibility_layer if plausibility_layer is not None else (earlier[-1] if earlier else layer)

    # the natural images' summaries, once per natural data, network and layers (kept for the next call)
    own_layers = [layer, *earlier] + ([plaus_layer] if plaus_net is network and plaus_layer not in (layer, *earlier)
                                      else [])
    nat = _natural_summaries(natural, natural_images, num_natural, network, own_layers, layer, normalize)
    vis = _summaries(network, images, own_layers, layer, normalize)
    count = nat["maxima"].shape[1]
    if min(units) < 0 or max(units) >= count:
        raise ValueError(f"units must be in [0, {count}) for a layer with {count} channels/features, got {units}")
    rows = torch.arange(len(units))
    nat_scores = nat["maxima"][:, units]                            # (N, B)
    vis_scores = vis["maxima"][rows, units]                         # (B,)
    top = nat_scores.topk(top_k, dim=0).indices.T                  # (B, k) the top examples of each unit
    generator = torch.Generator().manual_seed(seed)
    random = torch.randperm(natural_images.shape[0], generator=generator)[:64]

    means = {name: nat[name].mean(0, keepdim=True) for name in [layer, *earlier]}
    centred = {name: nat[name] - means[name] for name in [layer, *earlier]}
    vis_profiles = {name: vis[name] - means[name] for name in [layer, *earlier]}

    transfer = {}
    if "transfer" in checks:
        transfer_layers = [OUTPUT] + ([plaus_layer] if plaus_net is transfer_network else [])
        t_nat = _natural_summaries(natural, natural_images, num_natural, transfer_network, transfer_layers, None,
                                   normalize)
        t_vis = _summaries(transfer_network, images, transfer_layers, None, normalize)
        transfer = {"natural": t_nat[OUTPUT].argmax(1), "images": t_vis[OUTPUT].argmax(1)}
    if "plausibility" in checks:
        if plaus_net is transfer_network and transfer:
            ref_nat, ref_vis = t_nat[plaus_layer], t_vis[plaus_layer]
        elif plaus_net is network:
            ref_nat, ref_vis = nat[plaus_layer], vis[plaus_layer]
        else:
            ref_nat = _natural_summaries(natural, natural_images, num_natural, plaus_net, [plaus_layer], None,
                                         normalize)[plaus_layer]
            ref_vis = _summaries(plaus_net, images, [plaus_layer], None, normalize)[plaus_layer]
        plausibility = plausibility_distance(ref_vis, ref_nat)
        # a natural image's own distance, to the nearest *other* natural image: the scale of the numbers
        own = _cosine(ref_nat, ref_nat)
        own.fill_diagonal_(-math.inf)
        natural_distance = (1 - own.max(1).values).median().item()
    if "high frequency" in checks:
        hf = high_frequency_energy(images.float().cpu(), high_frequency_cutoff)
        hf_natural = high_frequency_energy(natural_images[:64], high_frequency_cutoff).median().item()
    if "path" in checks:
        # the share of each picture's score that arrives through its layer's input, as for its top examples
        c_vis, u_vis = _carried(network, layer, images, units, normalize)
        best = top[:, :CARRIED_EXAMPLES]                                     # (B, 4) the unit's best four
        c_top, u_top = _carried(network, layer, natural_images[best.reshape(-1)],
                                [u for u in units for _ in range(best.shape[1])], normalize)
        share_top = (c_top / u_top).view(len(units), -1).median(1).values    # their share: below 1 by biases
        share_top = torch.where(share_top > 0, share_top, math.nan)
        carried = torch.where(u_vis > 0, c_vis / u_vis.clamp_min(1e-12), math.nan) / share_top
    if "seeds" in checks:
        seed_vis = [_summaries(network, s, [layer], None, normalize)[layer] - means[layer] for s in seed_images]

    results = []
    for i, (unit, name) in enumerate(zip(units, names)):
        row = UnitChecks(name, unit)
        examples = top[i]
        for check in checks:
            if check == "transfer":
                predicted = int(transfer["images"][i])
                if layer == OUTPUT:
                    target, why = unit, "the unit's class"
                else:
                    classes = transfer["natural"][examples]
                    target = int(classes.mode().values)
                    agree = (classes == target).sum().item()
                    if agree * 4 < len(classes) * 3:  # fewer than 3/4 of the top examples share a class: none
                        continue
                    why = f"the class of {agree}/{len(classes)} top examples"
                row.results.append(CheckResult(
                    "transfer", predicted == target, f"predicted {predicted}, {why} {target}",
                    {"predicted": predicted, "target": target}))
            elif check == "strength":
                best = nat_scores[examples[0], i].item()
                ratio = vis_scores[i].item() / best if best > 0 else math.inf
                row.results.append(CheckResult(
                    "strength", ratio <= thresholds["strength"],
                    f"{ratio:.2f}× the best natural image ({vis_scores[i].item():.3g} vs {best:.3g}; pass ≤ "
                    f"{thresholds['strength']:g}×)", {"ratio": ratio, "score": vis_scores[i].item(), "natural_max": best}))
            elif check == "path":
                baseline = random[~torch.isin(random, examples)]
                per_layer, typical = {}, {}
                for name_l in earlier:
                    feats = centred[name_l]
                    among = _cosine(feats[examples], feats[examples])
                    random_to_top = _cosine(feats[baseline], feats[examples]).mean(1)       # (R,)
                    to_top = _cosine(vis_profiles[name_l][i:i + 1], feats[examples]).mean().item()
                    per_layer[name_l] = (random_to_top < to_top).double().mean().item()
                    # the top examples' own score, each against the others (leave one out)
                    own = (among.sum(1) - among.diagonal()) / (len(examples) - 1)
                    typical[name_l] = (random_to_top[None, :] < own[:, None]).double().mean(1).median().item()
                score = sum(per_layer.values()) / len(per_layer)
                reference = sum(typical.values()) / len(typical)
                relative = score / reference if reference > 0 else (1.0 if score >= reference else 0.0)
                share = carried[i].item()
                worst = min(relative, share) if share == share else relative  # NaN: the picture does not drive it
                row.results.append(CheckResult(
                    "path", worst >= thresholds["path"],
                    f"{worst:.2f}: carried {share:.2f} (its score's share through the layer's input, against its top "
                    f"examples'); similarity {relative:.2f} (closer to them than {score:.0%} of random natural "
                    f"images, the top examples themselves {reference:.0%}); pass ≥ {thresholds['path']:g} both ("
                    + ", ".join(f"{k} {v:.0%}" for k, v in per_layer.items()) + ")",
                    {"score": worst, "carried": share, "relative": relative, "similarity": score,
                     "top_examples": reference, "layers": per_layer}))
            elif check == "plausibility":
                value = plausibility[i].item()
                row.results.append(CheckResult(
                    "plausibility", value <= thresholds["plausibility"],
                    f"{value:.3f} to the nearest natural image (natural images: {natural_distance:.3f}; pass ≤ "
                    f"{thresholds['plausibility']:g})", {"distance": value, "natural": natural_distance}))
            elif check == "high frequency":
                value = hf[i].item()
                row.results.append(CheckResult(
                    "high frequency", value <= thresholds["high frequency"],
                    f"{value:.3f} of the energy above {high_frequency_cutoff:g} cycles/px (natural images: "
                    f"{hf_natural:.3f}; pass ≤ {thresholds['high frequency']:g})",
                    {"fraction": value, "natural": hf_natural}))
            elif check == "seeds":
                feats = centred[layer]
                profiles = torch.stack([vis_profiles[layer][i], *(s[i] for s in seed_vis)])
                among_seeds = _mean_offdiagonal(_cosine(profiles, profiles))
                pairs = _cosine(feats[random], feats[random])
                pairs = pairs[torch.triu_indices(len(random), len(random), 1).unbind()]
                score = (pairs < among_seeds).double().mean().item()
                row.results.append(CheckResult(
                    "seeds", score >= thresholds["seeds"],
                    f"{len(profiles)} seeds' pictures are more alike than {score:.0%} of pairs of random natural "
                    f"images (cosine {among_seeds:.2f}; pass ≥ {thresholds['seeds']:.0%})",
                    {"similarity": score, "cosine": among_seeds, "seeds": len(profiles)}))
        results.append(row)
    return results


def _cell(result: CheckResult | None) -> str:
    if result is None:
        return "–"
    value = next(iter(result.values.values()), None) if result.values else None
    number = f" {value:.2f}" if isinstance(value, float) else (f" {value}" if isinstance(value, int) else "")
    if result.name == "transfer":
        number = f" {result.values['predicted']}→{result.values['target']}"
    return ("pass" if result.passed else "**FAIL**") + number


def visualization_checks_table(results: Sequence[UnitChecks]) -> str:
    """The checks as a Markdown table: one row per unit, one column per check (``pass``/``FAIL`` and its number).

    Example:
        >>> row = UnitChecks("features.4-3", 3, [CheckResult("strength", True, "", {"ratio": 1.5})])
        >>> print(visualization_checks_table([row]))
        | unit | verdict | strength |
        |---|---|---|
        | features.4-3 | pass | pass 1.50 |
    """
    run = [c for c in CHECKS if any(r.name == c for row in results for r in row.results)]
    lines = ["| unit | verdict | " + " | ".join(run) + " |", "|---" * (len(run) + 2) + "|"]
    for row in results:
        by_name = {r.name: r for r in row.results}
        lines.append(f"| {row.name} | {'pass' if row.passed else '**FAIL**'} | "
                     + " | ".join(_cell(by_name.get(c)) for c in run) + " |")
    return "\n".join(lines)


def visualization_checks_json(results: Sequence[UnitChecks]) -> list[dict[str, Any]]:
    """The checks as plain data: per unit its ``name``, ``unit``, ``passed`` and ``checks`` (name, passed, detail, values).

    Example:
        >>> visualization_checks_json([UnitChecks("output-3", 3, [CheckResult("strength", False, "9×", {"ratio": 9.0})])])
        [{'name': 'output-3', 'unit': 3, 'passed': False, 'checks': [{'name': 'strength', 'passed': False, 'detail': '9×', 'values': {'ratio': 9.0}}]}]
    """
    return [{"name": row.name, "unit": row.unit, "passed": row.passed,
             "checks": [{"name": r.name, "passed": bool(r.passed), "detail": r.detail, "values": r.values}
                        for r in row.results]} for row in results]


class _Checkerboard(nn.Module):
    """The trap's detector: the squared correlation of the grey image with a pixel checkerboard (period 2)."""

    def __init__(self) -> None:
        super().__init__()
        sign = torch.tensor([1.0, -1.0, 1.0, -1.0])
        self.register_buffer("kernel", (sign[:, None] * sign[None, :] / 16)[None, None])

    def forward(self, x: Tensor) -> Tensor:
        grey = x.float().mean(1, keepdim=True)
        return F.conv2d(grey, self.kernel, padding=2).square()


def checkerboard_trap(network: nn.Module, layer: str, channel: int, gain: float = 1000.0) -> nn.Module:
    """A deliberately manipulated copy of ``network``: channel ``channel`` of ``layer`` also fires on a pixel
    checkerboard, a pattern natural images do not show.

    A detector (the squared correlation of the grey input with a 4×4 checkerboard of period 2 pixels,
    average-pooled to the layer's size, times ``gain``) is added to the channel's output by a forward hook;
    layer names do not change. Natural images hold almost no checkerboard: the largest squared response on
    the 1,797 digits is 0.0033 (a full-contrast checkerboard: 0.25), so the network classifies them as it did
    (on the digits model with the default gain, every prediction of the 450 test digits is the same and no
    logit moves by more than 0.012), but the channel's visualization shows a checkerboard, a
    feature the network never uses on real data: a unit whose visualization the checks must fail (after the
    simplest of the constructions of Geirhos et al. 2023). The detector has a gradient everywhere, so
    gradient ascent finds it.

    Args:
        network: the network (copied; the original is not changed).
        layer: a ``(B, C, H, W)`` layer.
        channel: the manipulated channel of ``layer``.
        gain: the detector's weight.

    Example:
        >>> from inputopt.zoo import digits_cnn, load_digits_split
        >>> base = digits_cnn("a")
        >>> trap = checkerboard_trap(base, "features.4", channel=3)
        >>> digits = load_digits_split("test")[0]
        >>> bool((trap(digits).argmax(1) == base(digits).argmax(1)).all())
        True
        >>> board = ((torch.arange(32)[:, None] + torch.arange(32)) % 2).float().expand(1, 1, 32, 32)
        >>> bool(trap(board).sub(base(board)).abs().max() > 1)
        True
    """
    trap = copy.deepcopy(network)
    detector = _Checkerboard()
    trap.add_module("checkerboard_trap", detector)
    target = resolve_layer(trap, layer)
    state: dict[str, Tensor] = {}

    def remember_input(module: nn.Module, args: tuple) -> None:
        state["input"] = args[0]

    def add_detector(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        if output.ndim != 4:
            raise ValueError(f"checkerboard_trap needs a (B, C, H, W) layer; {layer!r} gives {tuple(output.shape)}")
        response = F.adaptive_avg_pool2d(detector(state["input"]), output.shape[-2:])[:, 0]
        output = output.clone()
        output[:, channel] = output[:, channel] + gain * response.to(output.dtype)
        return output

    trap.register_forward_pre_hook(remember_input)
    target.register_forward_hook(add_detector)
    return trap
