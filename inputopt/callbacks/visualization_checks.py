"""The visualization checks of :mod:`inputopt.metrics.visualization_checks` as a callback of a fit or a sweep."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from inputopt.callbacks._checks import _output_dir
from inputopt.metrics.visualization_checks import (
    CHECKS,
    THRESHOLDS,
    UnitChecks,
    visualization_checks,
    visualization_checks_json,
    visualization_checks_table,
)

__all__ = ["VisualizationChecks"]

#: The natural images a name stands for: the digits' held-out split, or crops of the photographs.
NATURAL = ("digits", "photos")
#: The natural data sets and transfer networks built from their descriptions, shared by every callback of the
#: process (an atlas checks each layer with a callback of its own), so they are built and read once.
_BUILT: dict[tuple, Any] = {}


def _units_objective(objective: Any) -> Any:
    """The objective with units, itself or the first term of a sum (e.g. a feature accentuation)."""
    from inputopt.objectives.base import UnitsObjective

    if isinstance(objective, UnitsObjective):
        return objective
    for term in getattr(objective, "terms", ()):
        if isinstance(term, UnitsObjective):
            return term
    raise ValueError(f"VisualizationChecks needs an objective with units (UnitActivation, ChannelSum, ...) or a Sum "
                     f"with one, got {type(objective).__name__}")


class VisualizationChecks(Callback):
    """When a fit of :class:`~inputopt.InputOptimization` or a sweep of :class:`~inputopt.FeatureSweep` ends,
    check every unit's visualization (:func:`~inputopt.metrics.visualization_checks.visualization_checks`:
    transfer, strength, path, plausibility, high frequency, and seeds when ``seeds > 1``).

    Writes ``checks.md`` (one row per unit, pass/fail and the numbers) and ``checks.json`` (every number)
    and prints the table. From the command line::

        inputopt fit --config configs/digits_fourier.yaml --trainer.callbacks+=VisualizationChecks \\
            --trainer.callbacks.transfer_network=digits_b
        inputopt sweep --config configs/digits_atlas.yaml --trainer.callbacks+=VisualizationChecks

    A sweep checks all its units, those a resumed sweep skipped read from its files, and writes beside its
    images (the folder of :class:`~inputopt.callbacks.sweep.SaveSweep`) unless ``dirpath`` is given: so
    ``inputopt sweep`` with this callback on a finished sweep folder (an atlas's ``layers/<layer>/seed-<s>``,
    with the atlas's ``fit-seed-<s>.yaml``) checks its units without optimizing anything, and the atlas
    shows the checks.

    Args:
        natural: the natural images: ``"digits"`` (the digits' held-out split), ``"photos"`` (182 crops of the
            photographs of :class:`~inputopt.data.PhotoCrops`, at scales 1, 0.7 and 0.5 of each, at the images'
            size), a data set of
            ``(image, label)`` samples, its ``{class_path, init_args}`` config, or a ``(N, C, H, W)`` tensor.
        transfer_network: an independently trained network with the same classes (a name for
            :func:`~inputopt.build_network`: ``digits_b`` for ``digits``, ``efficientnet_lite1`` for
            ``efficientnet_lite0``); ``None`` leaves ``transfer`` out and takes ``plausibility``'s features
            from the run's network.
        plausibility_layer: the layer of ``plausibility``'s features (``classifier.2`` for the digits).
        layers: the earlier layers of ``path`` (default: three convolution or linear layers before the units').
        seeds: with 2 or more, also the ``seeds`` check: the units are visualized again with ``seeds - 1``
            other seeds (each costs as much as the run).
        checks: the checks to run (default: all but ``seeds``, which ``seeds`` turns on).
        thresholds: overrides of the pass thresholds (:data:`~inputopt.metrics.visualization_checks.THRESHOLDS`).
        top_k: how many top natural examples of each unit the checks compare with.
        num_natural: how many natural images (the first ones) the checks read.
        dirpath: where to write; default the sweep's folder, or the trainer's log directory.
        verbose: print the table.

    Example:
        >>> import tempfile
        >>> from lightning.pytorch import Trainer
        >>> from inputopt import ChannelSum, FourierImage, InputOptimization, Problem
        >>> module = InputOptimization(Problem("digits", ChannelSum("features.4", channel=[3, 5]),
        ...                                    param=FourierImage(decay_power=1.5, mean=0.5, clamp=(0, 1))))
        >>> checks = VisualizationChecks("digits", transfer_network="digits_b", plausibility_layer="classifier.2",
        ...                              num_natural=200, dirpath=tempfile.mkdtemp(), verbose=False)
        >>> Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...         enable_model_summary=False, callbacks=[checks]).fit(module)
        >>> [row.name for row in checks.results], "strength" in [r.name for r in checks.results[0].results]
        (['features.4-3', 'features.4-5'], True)
    """

    def __init__(self, natural: str | Mapping[str, Any] | Any = "digits", transfer_network: str | None = None,
                 plausibility_layer: str | None = None, layers: list[str] | None = None, seeds: int = 1,
                 checks: list[str] | None = None, thresholds: dict[str, float] | None = None, top_k: int = 8,
                 num_natural: int | None = 512, dirpath: str | os.PathLike | None = None,
                 verbose: bool = True) -> None:
        if isinstance(natural, str) and natural not in NATURAL:
            raise ValueError(f"natural must be one of {list(NATURAL)}, a data set, its config or a tensor; got "
                             f"{natural!r}")
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
        unknown = sorted(set(checks or ()) - set(CHECKS)) + sorted(set(thresholds or ()) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"unknown checks or thresholds {unknown}; valid checks: {list(CHECKS)}")
        self.natural = natural
        self.transfer_network = transfer_network
        self.plausibility_layer = plausibility_layer
        self.layers = layers
        self.seeds = seeds
        self.checks = None if checks is None else list(checks) + (["seeds"] if seeds > 1 and "seeds" not in checks else [])
        self.thresholds = dict(thresholds or {})
        self.top_k = top_k
        self.num_natural = num_natural
        self.dirpath = dirpath
        self.verbose = verbose
        self.results: list[UnitChecks] = []
        self.paths: list[Path] = []
        self._outputs: list[tuple[list[int], list[str], Tensor]] = []

    # -- what the module gives -----------------------------------------------------------------------------------
    def _natural(self, image_shape: Sequence[int]) -> Any:
        """The natural data set, built once per description and image size and shared by every callback (an
        atlas's layers), so the checks' summaries of it are kept too; a data set given as an object is used as is."""
        if not isinstance(self.natural, (str, Mapping)):
            return self.natural
        key = ("natural", json.dumps(self.natural, sort_keys=True, default=str), tuple(image_shape))
        if key not in _BUILT:
            _BUILT[key] = self._build_natural(image_shape)
        return _BUILT[key]

    def _transfer(self, device: torch.device) -> Any:
        """The transfer network, built once per name and device and shared by every callback."""
        from inputopt.networks import NetworkSpec

        if self.transfer_network is None:
            return None
        key = ("transfer", json.dumps(self.transfer_network, sort_keys=True, default=str), str(device))
        if key not in _BUILT:
            _BUILT[key] = NetworkSpec(self.transfer_network).build(0).to(device)
        return _BUILT[key]

    def _build_natural(self, image_shape: Sequence[int]) -> Any:
        from inputopt._config import build

        if isinstance(self.natural, str):
            if self.natural == "digits":
                from inputopt.data import Digits

                return Digits("test")
            from inputopt.data import PhotoCrops

            return PhotoCrops(size=image_shape[-1], scales=(1.0, 0.7, 0.5))  # 182 crops of every photograph
        return build(self.natural) if isinstance(self.natural, Mapping) else self.natural

    def _render(self, module: LightningModule, units: list[int], seed: int, steps: int) -> Tensor:
        """The units' images again with another seed: the same run, another starting tensor and transforms."""
        from inputopt._config import instantiate
        from inputopt.engine import optimize
        from inputopt.functional.random import RowRandom
        from inputopt.params.base import ImageParam
        from inputopt.runners.base import inner_optimization
        from inputopt.runners.sweep import FeatureSweep

        with torch.inference_mode(False), torch.enable_grad(), inner_optimization():
            if isinstance(module, FeatureSweep):
                objective = module.objective.with_units(units)
                path = module._path(objective)
                param = instantiate(module.param_config, ImageParam).initialize(module.image_shape, keys=units, seed=seed)
                param = param.to(module.device)
                targets = path.default_targets(param())
                optimize(param, path, module.steps, module.optimizer_factory, targets,
                         RowRandom(seed).stream("start").seeds(units))
            else:
                param = instantiate(module.param.config(), ImageParam)
                if module._init_hash is not None:  # started from given images: only the transforms differ
                    param.initialize_from(module.start.cpu())
                else:
                    param.initialize(tuple(module.start.shape[1:]), module.row_keys, seed)
                param = param.to(module.device)
                optimize(param, module.path, steps, module.optimizer_factory, module.targets,
                         RowRandom(seed).stream("start").seeds(module.row_keys))
            with torch.no_grad():
                return param().detach()

    def run(self, module: LightningModule, units: list[int], names: list[str], images: Tensor,
            steps: int = 0) -> list[UnitChecks]:
        """Check ``images`` (``units``' visualizations by ``module``, a fit or a sweep); returns and keeps :attr:`results`."""
        from inputopt.runners.sweep import FeatureSweep

        objective = module.objective if isinstance(module, FeatureSweep) else _units_objective(module.objective)
        transfer = self._transfer(images.device)
        seed_images = None
        if self.seeds > 1:
            seed_images = torch.stack([self._render(module, units, module.seed + k, steps)
                                       for k in range(1, self.seeds)])
        self.results = visualization_checks(
            module.network, objective.layer, units, images, self._natural(images.shape[1:]), names=names,
            normalize=module.normalize, transfer_network=transfer, plausibility_layer=self.plausibility_layer,
            layers=self.layers, seed_images=seed_images, checks=self.checks, thresholds=self.thresholds,
            top_k=self.top_k, num_natural=self.num_natural, seed=module.seed)
        return self.results

    def _write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        table = visualization_checks_table(self.results)
        passed = sum(row.passed for row in self.results)
        self.paths = [out / "checks.md", out / "checks.json"]
        self.paths[0].write_text(f"Visualization checks: {passed} of {len(self.results)} units pass every check\n\n"
                                 f"{table}\n")
        self.paths[1].write_text(json.dumps(visualization_checks_json(self.results), indent=2, default=float) + "\n")
        if self.verbose:
            print(table)
        rank_zero_info(f"Visualization checks: {passed} of {len(self.results)} units pass; {self.paths[0]}")

    # -- a fit -----------------------------------------------------------------------------------------------------
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from inputopt.callbacks._checks import _check_module

        module = _check_module(pl_module, "VisualizationChecks")
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        self.run(module, list(module.row_keys), module.image_names(), module.images(), trainer.global_step)
        self._write(out)

    # -- a sweep ---------------------------------------------------------------------------------------------------
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._outputs = []

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, Mapping) and "images" in outputs:
            self._outputs.append((list(outputs["units"]), list(outputs["names"]), outputs["images"].detach().cpu()))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # not on_test_end: a sweep whose units are all done runs no test loop, and its units are still checked
        if stage == "test":
            try:
                self._check_sweep(trainer, pl_module)
            finally:
                self._outputs = []

    def _check_sweep(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from inputopt.callbacks.sweep import SaveSweep
        from inputopt.runners.sweep import FeatureSweep

        if not isinstance(pl_module, FeatureSweep):
            raise TypeError(f"VisualizationChecks works with InputOptimization (fit) or FeatureSweep (sweep), not "
                            f"{type(pl_module).__name__}")
        gathered = [self._outputs]
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, self._outputs)
        if not trainer.is_global_zero:
            return
        chunks = [chunk for outputs in gathered for chunk in outputs]
        save = next((c for c in trainer.callbacks if isinstance(c, SaveSweep)), None)
        computed = {n for chunk in chunks for n in chunk[1]}
        if save is not None:  # the units a resumed sweep skipped: their images from the sweep's files
            from inputopt.results import file_name

            for unit, name in zip(pl_module.units, pl_module.image_names):
                path = Path(save.dirpath) / "units" / f"{file_name(name)}.pt"
                if name not in computed and path.is_file():
                    chunks.append(([unit], [name], torch.load(path, weights_only=True)[None].float()))
        if not chunks:
            rank_zero_info("Visualization checks: no unit to check")
            return
        units = [u for chunk in chunks for u in chunk[0]]
        names = [n for chunk in chunks for n in chunk[1]]
        images = torch.cat([chunk[2] for chunk in chunks]).to(pl_module.device)
        order = sorted(range(len(units)), key=lambda i: pl_module.units.index(units[i]))
        self.run(pl_module, [units[i] for i in order], [names[i] for i in order], images[order])
        self._write(Path(self.dirpath) if self.dirpath is not None else
                    save.dirpath if save is not None else Path(trainer.default_root_dir))
