"""Feature-visualization sweeps: the units are the data of a dataset runner.

:class:`FeatureSweep` is a :class:`~inputopt.runners.base.DatasetRunner` whose data set is the units of an
objective. Every test batch is a chunk of units, optimized for the configured number of steps in an inner
loop (:func:`~inputopt.engine.optimize`, the loss path of a fit). Several devices give every process its own
chunks through the runner's distributed sampler. :class:`~inputopt.callbacks.sweep.SaveSweep` writes the results (one file per unit
as it finishes, the grid and ``input.pt`` at the end), resumes from the files and refuses to mix in the
results of another configuration. ``inputopt sweep`` (:func:`~inputopt.commands.sweep.sweep_main`) builds both from the arguments
of ``inputopt fit``.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from inputopt._config import import_class
from inputopt.engine import check_precision, optimize
from inputopt.functional.random import RowRandom
from inputopt.networks import default_image_shape
from inputopt.objectives.base import UnitsObjective
from inputopt.problem import Problem
from inputopt.runners.base import DatasetRunner, inner_optimization

__all__ = ["RECORD", "FeatureSweep", "record_differences"]

#: The file of a sweep folder that records what defines its images (everything but the units).
RECORD = "sweep.yaml"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists), the form the record is stored and compared in."""
    return json.loads(json.dumps(value, default=repr))


def _class_record(cls: type, init_args: Mapping[str, Any]) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` of a class, leaving out the arguments equal to its defaults."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}
    kept = {name: value for name, value in init_args.items()
            if name not in parameters or parameters[name].default is inspect.Parameter.empty
            or _plain(parameters[name].default) != _plain(value)}
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": kept}


def _optimizer(optimizer: OptimizerCallable | Mapping[str, Any] | None) -> tuple[Callable, dict[str, Any]]:
    """The optimizer factory and its record (class and non-default arguments)."""
    if optimizer is None:
        optimizer = partial(torch.optim.Adam, lr=0.1)
    if isinstance(optimizer, Mapping):
        if "class_path" not in optimizer:
            raise ValueError(f"an optimizer config needs a 'class_path', got keys {sorted(optimizer)}")
        cls = import_class(optimizer, torch.optim.Optimizer)
        init_args = dict(optimizer.get("init_args") or {})
        return partial(cls, **init_args), _class_record(cls, init_args)
    if isinstance(optimizer, partial) and not optimizer.args and isinstance(optimizer.func, type):
        return optimizer, _class_record(optimizer.func, optimizer.keywords)
    if isinstance(optimizer, type):
        return optimizer, _class_record(optimizer, {})
    # any other callable: recorded by name only (give a partial or a config for an exact record)
    name = getattr(optimizer, "__qualname__", type(optimizer).__qualname__)
    return optimizer, {"callable": f"{getattr(optimizer, '__module__', None)}.{name}"}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()}
    return {prefix[:-1]: value}


def record_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The settings where two records differ, as ``key: old -> new`` lines (dotted keys).

    Example:
        >>> record_differences({"steps": 100, "priors": [{"weight": 0.3}]}, {"steps": 50, "priors": [{"weight": 0.3}]})
        ['steps: 100 -> 50']
    """
    missing = "(absent)"
    a, b = _flatten(_plain(old)), _flatten(_plain(new))
    return [f"{key}: {a.get(key, missing)!r} -> {b.get(key, missing)!r}" for key in sorted(set(a) | set(b))
            if a.get(key, missing) != b.get(key, missing)]


class FeatureSweep(DatasetRunner):
    """Visualize many units: the units are the data, each test batch a chunk optimized in an inner loop.

    The units of the problem's objective (``unit``/``channel``: a list or ``"all"``) are the data set.
    ``trainer.test`` runs every chunk of ``units_per_batch`` units through :func:`~inputopt.engine.optimize` for
    ``steps`` steps (the same loss path, projection and optimizer as a fit of :class:`~inputopt.InputOptimization`
    with the same problem): the chunk's objective is the problem's with the chunk's units
    (:meth:`UnitsObjective.with_units`), its images a fresh copy of the problem's parameterization
    (:meth:`Problem.new_param`). A unit's starting tensor and random transforms come from ``(seed, unit)`` and the
    step only, so its image does not depend on the chunk, the chunk size or the number of processes, and equals
    the unit's row of a fit of the same problem. Several devices give every process its own chunks (the runner's
    distributed sampler).

    :meth:`test_step` returns the chunk's ``units``, ``names`` (``<layer>-<unit>``) and ``images``; the
    module writes nothing. :class:`~inputopt.callbacks.sweep.SaveSweep` writes them, resumes and records the
    configuration (:meth:`record`).

    Args:
        problem: the network, objective, priors, parameterization, transforms and seed
            (:class:`~inputopt.problem.Problem`, or its config); the objective has units
            (:class:`~inputopt.objectives.UnitActivation`, :class:`~inputopt.objectives.ChannelSum`, ...), one
            image per unit.
        image_shape: ``(C, H, W)`` of the images (default: the named network's own, as for ``InputOptimization``).
        optimizer: builds the optimizer from the parameters (a ``functools.partial`` or a
            ``{"class_path", "init_args"}`` config); ``None`` is Adam with lr 0.1.
        steps: optimization steps per chunk.
        units_per_batch: units optimized together (one test batch).

    Example:
        >>> import tempfile
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.callbacks.sweep import SaveSweep
        >>> from inputopt.objectives import ChannelSum
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> problem = Problem("digits", ChannelSum("features.4", channel="all"), [MultiScaleEdgeEnergy(0.3)])
        >>> sweep = FeatureSweep(problem, image_shape=(1, 32, 32), steps=5, units_per_batch=16)
        >>> out = tempfile.mkdtemp()
        >>> trainer = Trainer(callbacks=[SaveSweep(out, progress=False)], logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False)
        >>> _ = trainer.test(sweep, verbose=False)
        >>> torch.load(f"{out}/input.pt").shape, sweep.image_names[:2]
        (torch.Size([32, 1, 32, 32]), ['features.4-0', 'features.4-1'])
    """

    def __init__(
        self,
        problem: Problem,
        image_shape: Sequence[int] | None = None,
        optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
        steps: int = 250,
        units_per_batch: int = 64,
    ) -> None:
        if isinstance(units_per_batch, bool) or not isinstance(units_per_batch, int) or units_per_batch < 1:
            raise ValueError(f"units_per_batch must be >= 1, got {units_per_batch!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        problem = Problem.of(problem)
        if problem.objective is not None and problem.objective.couples_rows:
            # its chunks and processes would split the rows the objective compares
            raise ValueError(f"{type(problem.objective).__name__} couples the rows of a batch (e.g. Diversity, "
                             f"Alignment), and a sweep optimizes every unit once, in chunks spread over processes: "
                             f"optimize the copies of a unit together with `inputopt fit` (one run holds all its rows)")
        objective = problem.require(UnitsObjective, "a sweep", "UnitActivation or ChannelSum: one image per unit")
        if image_shape is None:
            image_shape = default_image_shape(problem.network_name) if problem.network_name is not None else None
            if image_shape is None:
                raise ValueError("image_shape (C, H, W) is needed: the network's own input shape is not known")
        if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)}")
        super().__init__(problem.network, [], batch_size=units_per_batch)
        self.problem = problem
        self.objective = objective
        self.priors = nn.ModuleList(problem.priors)
        self.transforms = problem.transforms
        self.normalize = problem.normalize
        param = problem.new_param()
        param._check_shape(tuple(image_shape))  # fail now, not at the first chunk
        self.image_shape = tuple(image_shape)
        self.optimizer_factory, optimizer_record = _optimizer(optimizer)
        self.steps = steps
        self.seed = problem.seed
        record = problem.config()  # its objective's units are left out below

        # "all" resolved and every unit checked against the real layer, with one zero image
        with torch.no_grad():
            activations = problem.probe(torch.zeros(1, *self.image_shape))
            objective.resolve(activations)
            objective.check_units(activations[objective.layer])
            objective.with_units(objective.units[:1]).default_targets(activations)  # its other checks, on one row
        self.units: list[int] = objective.units
        self.image_names: list[str] = objective.row_names(len(self.units))
        if len(set(self.units)) != len(self.units):
            raise ValueError(f"a sweep makes one image per unit, but units {self.units} repeat some")
        self.dataset = list(self.units)

        record["objective"]["init_args"].pop(objective.units_argument, None)
        record["param"] = param.config()  # the parameterization used (the default one too)
        self._record = _plain({**record, "image_shape": list(self.image_shape), "optimizer": optimizer_record,
                               "steps": steps})

    def record(self) -> dict[str, Any]:
        """Everything that defines the images, as plain data, but the units: a sweep folder's ``sweep.yaml``;
        with a Trainer, its precision too (bf16 images never sit beside fp32 ones)."""
        record = json.loads(json.dumps(self._record))
        if self._trainer is not None:
            record["precision"] = str(self._trainer.precision)
        return record

    def skip(self, names: Sequence[str]) -> None:
        """Leave out the units named ``names`` (already done): call before the test loop starts."""
        done = set(names)
        self.dataset = [u for u, n in zip(self.units, self.image_names) if n not in done]

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        warnings.filterwarnings("ignore", message=".*test_dataloader' does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Total length of `DataLoader` across ranks is zero.*")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        """Optimize one chunk of units; returns its ``units``, ``names`` and ``images`` ``(B, C, H, W)``."""
        _, units = batch
        units = units.tolist()
        objective = self.objective.with_units(units)
        path = self.problem.path(objective)
        with inner_optimization():
            param = self.problem.new_param().initialize(self.image_shape, keys=units, seed=self.seed)
            param = param.to(self.device)
            targets = path.default_targets(param())
            optimize(param, path, self.steps, self.optimizer_factory, targets,
                     RowRandom(self.seed).stream("start").seeds(units), callbacks=[self.stop_callback])
            with torch.no_grad():
                images = param().detach()
        return {"units": units, "names": objective.row_names(len(units)), "images": images}
