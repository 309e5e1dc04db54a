"""What an atlas is made of: its settings as dataclasses (what ``inputopt atlas --config`` parses), the
layer folders' names, and the record that a second atlas into the same folder is checked against."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from inputopt._resolve import resolve

__all__ = ["AtlasExamples", "AtlasLayer", "AtlasMetrics", "AtlasVisualization", "crop_name", "full_class_path",
           "layer_slug", "resolve_unit_names"]


@dataclass
class AtlasLayer:
    """One layer of the atlas.

    Args:
        name: dotted layer name from ``named_modules()`` (``None``: the network's output, the classes), or a
            pattern (``fnmatch``: ``blocks.?`` is every stage ``blocks.0`` ... ``blocks.6`` of EfficientNet-Lite0)
            that stands for every layer it matches, each with these settings.
        units: channel/feature indices, or ``"all"``.
        crop_size: the side in pixels of the box marked on the dataset examples, overriding the receptive
            field (``None``: the receptive field of the unit at its maximal position, computed from the
            network; the whole image for a ``(B, F)`` layer or a global field).
        context: the side in pixels of the crop shown around the box (``None``: twice the box's side, at
            most the image).
        display: how this layer's visualizations are shown (``None``: ``visualization.display``).
        unit_names: a name per unit of the layer (the classes of the output, say), shown beside the unit
            numbers: a list indexed by unit, or the dotted path of a function without arguments that returns
            one (``inputopt.zoo.efficientnet.imagenet_classes``), in ``inputopt.zoo``, ``inputopt.data`` or a
            package the config allows (``allow_packages:``).
    """

    name: str | None
    units: list[int] | Literal["all"] = "all"
    crop_size: int | None = None
    context: int | None = None
    display: Literal["std", "clamp"] | None = None
    unit_names: list[str] | str | None = None


@dataclass
class AtlasVisualization:
    """How every unit is optimized: the settings of ``inputopt sweep`` beside its problem (one sweep per layer and
    seed; the priors, parameterization and transforms are the atlas' problem's).

    Args:
        optimizer: ``{"class_path", "init_args"}`` (default Adam with lr 0.1).
        steps: optimization steps of every unit.
        seeds: one image per unit and seed (a unit's starting noise and transforms come from the seed); ``None``:
            the problem's seed.
        units_per_batch: units optimized together.
        display: ``"std"`` or ``"clamp"``: how the images are shown.
    """

    optimizer: dict[str, Any] | None = None
    steps: int = 250
    seeds: list[int] | None = None
    units_per_batch: int = 64
    display: Literal["std", "clamp"] = "std"


@dataclass
class AtlasExamples:
    """The dataset examples of every unit (``inputopt examples``, one pass over the data per layer).

    Args:
        dataset: the data set (``{"class_path", "init_args"}``), samples ``(image, ...)`` in pixel space.
        k: examples per unit.
        bottom: also the ``k`` images with the lowest (most negative) activations of every unit.
        percentiles: percentiles (0-100) of every unit's activations over the data set to show one example at
            each (``[]``: none), taken over a sample of up to 4096 images spread over the data set (exact for a
            data set no larger).
        batch_size: images per batch.
        num_workers: data-loading worker processes.
    """

    dataset: dict[str, Any] = field(default_factory=lambda: {"class_path": "inputopt.data.Digits"})
    k: int = 8
    bottom: bool = True
    percentiles: list[float] = field(default_factory=lambda: [99.0, 90.0, 50.0])
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.bottom, bool):
            raise ValueError(f"examples.bottom must be true or false, got {self.bottom!r}")
        q = [float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else float("nan")
             for p in self.percentiles]
        if not all(0 <= p <= 100 for p in q) or len(set(q)) != len(q):
            raise ValueError(f"examples.percentiles must be distinct numbers in [0, 100], got {self.percentiles!r}")
        self.percentiles = q

    def covers(self, results: Mapping[str, Any]) -> bool:
        """Whether the results of a :class:`~inputopt.runners.examples.DatasetExamples` pass (``examples.json``)
        hold the examples of these settings: the same ``k``, the bottom examples exactly if ``bottom``, and those
        at exactly these ``percentiles``.

        Example:
            >>> AtlasExamples(k=3, bottom=False, percentiles=[]).covers({"k": 3})
            True
            >>> AtlasExamples(k=3).covers({"k": 3})   # an examples.json from before the bottom and percentiles
            False
        """
        percentiles = results.get("percentiles") or {}
        return (results.get("k") == self.k and ("bottom" in results) == self.bottom
                and [float(q) for q in percentiles.get("q", [])] == self.percentiles)


@dataclass
class AtlasMetrics:
    """The quality metrics of every unit's images.

    Args:
        transfer_networks: independent networks; for the output layer's units (the classes), whether each
            network classifies the unit's visualization as its class.
        high_frequency_cutoff: cutoff of the high-frequency energy, in cycles per pixel.
    """

    transfer_networks: list[str] = field(default_factory=list)
    high_frequency_cutoff: float = 0.25


_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def layer_slug(name: str | None) -> str:
    """The folder (and page) name of a layer: the name itself when it is made of safe characters, else a
    cleaned name with a hash of the exact name; the output (``None``) is ``output-<hash>``.

    Example:
        >>> layer_slug("features.4")
        'features.4'
        >>> layer_slug("<script>")
        'script-5b63e5b2'
    """
    if name is not None and _SAFE.match(name) and not name.startswith("output-"):
        return name
    text = "output" if name is None else (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "layer")[:40]
    digest = hashlib.sha256(("\0" if name is None else name).encode()).hexdigest()[:8]
    return f"{text}-{digest}"


def crop_name(unit: int, group: Literal["top", "bottom", "percentiles"], rank: int, q: float | None = None) -> str:
    """The file name, in a layer's ``examples/crops/``, of a unit's example: its ``rank``-th top example
    (``<unit>-<rank>.png``), bottom example (``<unit>-bottom-<rank>.png``) or its example at the percentile ``q``
    (``<unit>-p<q>.png``).

    Example:
        >>> crop_name(3, "top", 0), crop_name(3, "bottom", 1), crop_name(3, "percentiles", 0, 99.5)
        ('3-0.png', '3-bottom-1.png', '3-p99.5.png')
    """
    if group == "top":
        return f"{unit}-{rank}.png"
    if group == "bottom":
        return f"{unit}-bottom-{rank}.png"
    if group == "percentiles" and q is not None:
        return f"{unit}-p{float(q):g}.png"
    raise ValueError(f"group must be 'top', 'bottom' or 'percentiles' (with its percentile q), got {group!r}, q={q!r}")


def full_class_path(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A component config with its ``class_path`` written in full (``PixelImage`` ->
    ``inputopt.params.pixel.PixelImage``), so that it is the same record however it was spelt.

    Example:
        >>> full_class_path({"class_path": "PixelImage", "init_args": {"std": 0.01}})
        {'class_path': 'inputopt.params.pixel.PixelImage', 'init_args': {'std': 0.01}}
    """
    if config is None:
        return None
    path = str(config["class_path"])
    if "." in path:
        cls = resolve(path, "class")  # nothing outside the allowed packages is imported
    else:
        import inputopt

        cls = getattr(inputopt, path, None) if path in inputopt.__all__ else None
    if not isinstance(cls, type):
        raise ValueError(f"class_path {path!r} names no class (give a dotted path, or a name of inputopt.__all__)")
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(config.get("init_args") or {})}


def resolve_unit_names(names: list[str] | str | None, count: int) -> list[str] | None:
    """The names of a layer's ``count`` units: ``names`` itself, or what the function at its dotted path
    returns; checked to name every unit.

    Example:
        >>> resolve_unit_names(["zero", "one"], 2)
        ['zero', 'one']
    """
    if names is None:
        return None
    if isinstance(names, str):
        # read from a config: only a function of inputopt.zoo, inputopt.data or a package the user allowed,
        # checked before it is imported or called (never os.abort, tempfile.mkdtemp or builtins.input)
        names = resolve(names, "function", option="unit_names")()
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"unit_names must name each of the layer's {count} units, got {len(names)} names")
    return names
