"""The problem of a run, described once: the network, the objective, the priors, the image parameterization, the
robustness transforms and the seed.

Every runner takes a :class:`Problem` plus its own few settings (a fit its image shape and optimizer, a sweep its
steps and chunk size, a data-set runner its data), so the same problem object (or the same ``problem:`` block of a
YAML config) describes the images of a fit, a sweep, the dataset examples of the same units and their checks.
Pure torch: no Lightning.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from inputopt._config import build
from inputopt.loss import LossPath, probe
from inputopt.networks import NetworkSpec
from inputopt.objectives.base import InputObjective
from inputopt.params.base import ImageParam
from inputopt.priors.base import Prior
from inputopt.transforms.base import Transform, Transforms

__all__ = ["Problem"]


def _spec(network: Any) -> NetworkSpec:
    if isinstance(network, NetworkSpec):
        return network
    if isinstance(network, Mapping):
        record = network.get("model") if isinstance(network.get("model"), Mapping) else network
        if "module" in record:  # a record of a module (Problem.config()): data cannot rebuild it
            raise ValueError(f"the network was a module ({record['module']}), which a config cannot rebuild: "
                             f"give the problem again with the module, Problem(module, ...)")
        unknown = sorted(set(network) - set(NetworkSpec.__dataclass_fields__))
        if unknown or "model" not in network:
            raise ValueError(f"network must be a name, a module or a mapping of {list(NetworkSpec.__dataclass_fields__)} "
                             f"with 'model' (e.g. {{model: vgg16, weights: IMAGENET1K_V1}}), got keys {sorted(network)}")
        return NetworkSpec(**network)
    return NetworkSpec(network)


class Problem:
    """What an input optimization optimizes: ``x* = argmax_x f(T(x)) − Σ_p w_p·h_p(x)`` for a network, with
    ``x = param()``. Described once and validated once: the components are built from their configs and
    type-checked, the network is built (random weights from ``seed``) and frozen, and :meth:`path` builds the
    loss path. The checks that need an image size (a layer that does not exist, a unit out of range, images the
    network cannot take) run when a runner knows the size (:meth:`probe`).

    Args:
        network: a network name (zoo, torchvision, ``timm/<name>``, dotted path), an ``nn.Module`` (frozen in
            place), or a :class:`~inputopt.networks.NetworkSpec` with weights, input normalization, layouts or
            an output; in a config, a name or a mapping of the spec's fields (``{model: vgg16, weights:
            IMAGENET1K_V1, mean: [...], std: [...]}``).
        objective: what to maximize, a ``(B,)`` score (or its ``{"class_path", "init_args"}`` config); objectives
            add and scale (``a - 0.5 * b``). ``None`` only for a runner that brings its own.
        priors: penalties on the images, each weighted by its ``weight``.
        param: the image parameterization; ``None``: the runner's default (``PixelImage()``, noise
            ``N(0, 0.01²)``; a feature inversion starts from grey).
        transforms: robustness transforms of the loss forward, e.g. ``[Pad(4), Jitter(2), RandomRotate(5)]``.
        seed: every row's randomness (its starting tensor and random transforms) comes from ``(seed, row key)``
            only; random network weights too, for a named network without weights.

    Example:
        >>> import torch
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> problem = Problem("digits", UnitActivation(None, unit=[3, 8]), [MultiScaleEdgeEnergy(weight=0.1)])
        >>> path = problem.path()
        >>> sorted(path.terms(torch.rand(2, 1, 32, 32), path.default_targets(torch.rand(2, 1, 32, 32))))
        ['MultiScaleEdgeEnergy', 'loss', 'objective']
        >>> Problem.of(problem.config()).config() == problem.config()
        True
    """

    def __init__(self, network: str | nn.Module | NetworkSpec, objective: InputObjective | None = None,
                 priors: Sequence[Prior] | None = None, param: ImageParam | None = None,
                 transforms: Sequence[Transform] | None = None, seed: int = 0) -> None:
        self._set_parts(objective, priors, param, transforms, seed)
        self.spec = _spec(network)
        self.network = self.spec.build(seed)
        self.normalize = self.spec.normalization()

    def _set_parts(self, objective: Any, priors: Any, param: Any, transforms: Any, seed: Any) -> None:
        """Build every part but the network from its config, and check its type."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if objective is not None:
            objective = build(objective, InputObjective)
            if not isinstance(objective, InputObjective):
                raise TypeError(f"objective must be an InputObjective or its {{class_path, init_args}} config, got "
                                f"{objective!r}")
        if isinstance(priors, (str, Mapping)) or (priors is not None and not isinstance(priors, Sequence)):
            raise TypeError(f"priors must be a list of priors, got {priors!r}")
        built_priors = [build(p, Prior) for p in (priors or [])]
        bad = [p for p in built_priors if not isinstance(p, Prior)]
        if bad:
            raise TypeError(f"priors must be Prior instances or their configs, got {bad[0]!r}")
        if param is not None:
            param = build(param, ImageParam)
            if not isinstance(param, ImageParam):
                raise TypeError(f"param must be an ImageParam or its {{class_path, init_args}} config, got {param!r}")
        if isinstance(transforms, (str, Mapping)):
            raise TypeError(f"transforms must be a list of transforms, got {transforms!r}")
        self.objective = objective
        self.priors: list[Prior] = built_priors
        self.param = param
        self.transforms = transforms if isinstance(transforms, Transforms) else Transforms(transforms or [])
        self.seed = seed

    def replace(self, **changes: Any) -> Problem:
        """A new problem with some of the parts (``objective``, ``priors``, ``param``, ``transforms``, ``seed``)
        replaced and the others the same. The network is the same module, not built again, unless a new seed
        gives a named network new random weights (a named network is built again with it).

        Example:
            >>> from inputopt.objectives import ChannelSum
            >>> problem = Problem("digits", seed=3)
            >>> layer = problem.replace(objective=ChannelSum("features.4", channel="all"))
            >>> layer.seed, layer.network is problem.network, problem.objective is None
            (3, True, True)
        """
        unknown = sorted(set(changes) - {"objective", "priors", "param", "transforms", "seed"})
        if unknown:
            raise ValueError(f"replace takes objective, priors, param, transforms and seed (the network is the "
                             f"problem's: build another Problem for another network), got {unknown}")
        parts = {"objective": self.objective, "priors": self.priors, "param": self.param,
                 "transforms": self.transforms, "seed": self.seed, **changes}
        new = copy.copy(self)
        new._set_parts(**parts)
        if new.seed != self.seed and isinstance(self.spec.model, str):
            new.network = self.spec.build(new.seed)
        return new

    @classmethod
    def of(cls, value: Problem | Mapping[str, Any]) -> Problem:
        """``value`` itself, or the problem its plain-data config (:meth:`config`, a ``problem:`` block) describes.

        Example:
            >>> Problem.of({"network": "digits", "seed": 3}).seed
            3
        """
        if isinstance(value, Problem):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"problem must be a Problem or its config (a mapping with 'network', 'objective', ...), "
                            f"got {type(value).__name__}")
        unknown = sorted(set(value) - {"network", "objective", "priors", "param", "transforms", "seed"})
        if unknown or "network" not in value:
            raise ValueError(f"a problem config needs 'network' and may have 'objective', 'priors', 'param', "
                             f"'transforms' and 'seed'; got keys {sorted(value)}")
        return cls(**value)

    @property
    def network_name(self) -> str | None:
        """The network's name, or ``None`` for a module (for class names and error messages)."""
        return self.spec.name

    def require(self, kind: type = InputObjective, runner: str = "this runner", example: str = "UnitActivation"
                ) -> InputObjective:
        """The objective, checked to be a ``kind`` (a clear error naming ``runner`` otherwise).

        Example:
            >>> Problem("digits").require(runner="a fit")
            Traceback (most recent call last):
            ...
            ValueError: a fit needs an objective in its problem (e.g. UnitActivation), got none
        """
        if self.objective is None:
            raise ValueError(f"{runner} needs an objective in its problem (e.g. {example}), got none")
        if not isinstance(self.objective, kind):
            raise ValueError(f"{runner} needs a {kind.__name__} objective (e.g. {example}), got "
                             f"{type(self.objective).__name__}")
        return self.objective

    def path(self, objective: InputObjective | None = None) -> LossPath:
        """The loss path of the problem: its network, normalization, priors and transforms, with ``objective``
        (default: the problem's own; a sweep gives each chunk of units its own)."""
        objective = self.objective if objective is None else objective
        if objective is None:
            raise ValueError("the problem has no objective: give one (e.g. UnitActivation) to build its loss path")
        return LossPath(self.network, objective, self.priors, self.transforms, self.normalize)

    def probe(self, images: Tensor, objective: InputObjective | None = None) -> dict[str, Tensor]:
        """The shape probe (:func:`inputopt.loss.probe`): the evaluation forward of ``images`` up to the objective's
        layers, after checking that the transforms can take their size; an error says what the network takes."""
        self.transforms.check(images.shape[1:])
        return probe(self.path(objective), images, self.network_name)

    def new_param(self, default: ImageParam | None = None) -> ImageParam:
        """A fresh, uninitialized copy of the parameterization (``default`` when the problem has none; else
        ``PixelImage()``): a runner that optimizes one input per batch starts each from its own copy."""
        from inputopt.params.pixel import PixelImage

        param = self.param if self.param is not None else default if default is not None else PixelImage()
        return copy.deepcopy(param)

    def config(self) -> dict[str, Any]:
        """The problem as plain data (a ``problem:`` block, a checkpoint's hyperparameters, a sweep's record):
        :meth:`of` rebuilds an equal problem from it, unless the network was a module (recorded by its class and
        a hash of its state).

        Example:
            >>> from inputopt.objectives import UnitActivation
            >>> Problem("digits", UnitActivation(None, unit=3), seed=1).config()["objective"]["init_args"]
            {'layer': None, 'unit': 3, 'position': None}
        """
        return {"network": self.spec.config(),
                "objective": None if self.objective is None else self.objective.config(),
                "priors": [p.config() for p in self.priors],
                "param": None if self.param is None else self.param.config(),
                "transforms": [t.config() for t in self.transforms.transforms],
                "seed": self.seed}

    def __repr__(self) -> str:
        parts = [repr(self.spec.model if isinstance(self.spec.model, str) else type(self.spec.model).__name__)]
        parts += [f"{name}={value!r}" for name, value in (("objective", self.objective), ("priors", self.priors),
                                                          ("param", self.param),
                                                          ("transforms", list(self.transforms.transforms)))
                  if value]
        return f"Problem({', '.join(parts)}, seed={self.seed})"
