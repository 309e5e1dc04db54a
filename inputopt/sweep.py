"""Feature-visualization sweeps: the units are the data of a dataset runner.

:class:`FeatureSweep` is a :class:`~inputopt.runner.DatasetRunner` whose data set is the units of an
objective. Every test batch is a chunk of units, optimized for the configured number of steps in an inner
loop (:func:`~inputopt.loss.optimize`, the loss path of a fit). Several devices give every process its own
chunks through the runner's distributed sampler. :class:`SaveSweep` writes the results (one file per unit
as it finishes, the grid and ``input.pt`` at the end), resumes from the files and refuses to mix in the
results of another configuration. ``inputopt sweep`` (:func:`sweep_main`) builds both from the arguments
of ``inputopt fit``.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from inputopt._config import build, import_components, instantiate
from inputopt.functional.display import DisplayMode
from inputopt.functional.init import row_seeds
from inputopt.loss import LossPath, optimize
from inputopt.module import InputOptimization, check_precision, frozen_network, probe
from inputopt.networks import Normalize, default_image_shape
from inputopt.objectives.base import UnitsObjective
from inputopt.params.base import ImageParam
from inputopt.params.pixel import PixelImage
from inputopt.priors.base import Prior
from inputopt.results import save_grid, save_images
from inputopt.runner import DatasetRunner, inner_optimization
from inputopt.transforms.base import Transform, Transforms

__all__ = ["FeatureSweep", "SaveSweep", "SweepCLI", "run_sweep", "sweep_main"]

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
        module_name, _, name = optimizer["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        init_args = dict(optimizer.get("init_args") or {})
        return partial(cls, **init_args), _class_record(cls, init_args)
    if isinstance(optimizer, partial) and not optimizer.args and isinstance(optimizer.func, type):
        return optimizer, _class_record(optimizer.func, optimizer.keywords)
    if isinstance(optimizer, type):
        return optimizer, _class_record(optimizer, {})
    # any other callable: recorded by name only (give a partial or a config for an exact record)
    name = getattr(optimizer, "__qualname__", type(optimizer).__qualname__)
    return optimizer, {"callable": f"{getattr(optimizer, '__module__', None)}.{name}"}


def _fingerprint(network: nn.Module) -> str:
    """SHA-256 of a network's state dict (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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

    The objective's units (``unit``/``channel``: a list or ``"all"``) are the data set. ``trainer.test``
    runs every chunk of ``units_per_batch`` units through :func:`~inputopt.loss.optimize` for ``steps``
    steps (the same loss path, projection and optimizer as a fit of :class:`~inputopt.InputOptimization`
    with the same arguments): the chunk's objective is this one with the chunk's units
    (:meth:`UnitsObjective.with_units`), its images a fresh parameterization from ``param``'s config.
    A unit's starting tensor and random transforms come from ``(seed, unit)`` and the step only, so its
    image does not depend on the chunk, the chunk size or the number of processes. Several devices give
    every process its own chunks (the runner's distributed sampler).

    :meth:`test_step` returns the chunk's ``units``, ``names`` (``<layer>-<unit>``) and ``images``; the
    module writes nothing. :class:`SaveSweep` writes them, resumes and records the configuration.

    Args:
        network: a network name (zoo, torchvision, dotted path) or an ``nn.Module`` (frozen in place).
        objective: an objective with units (:class:`~inputopt.objectives.UnitActivation`,
            :class:`~inputopt.objectives.ChannelSum`, ...), one image per unit.
        priors: penalties on the images, each weighted by its ``weight``.
        param: the image parameterization (its options; default ``PixelImage()``).
        transforms: robustness transforms of the loss forward.
        image_shape: ``(C, H, W)`` of the images (default: the named network's own, as for ``InputOptimization``).
        weights: torchvision weights name for a named network (``None``: random weights, from ``seed``).
        state_dict: local state_dict file for a named network.
        mean: per-channel mean subtracted before the network (with ``std``).
        std: per-channel standard deviation the images are divided by.
        optimizer: builds the optimizer from the parameters (a ``functools.partial`` or a
            ``{"class_path", "init_args"}`` config); ``None`` is Adam with lr 0.1.
        steps: optimization steps per chunk.
        seed: the seed of every unit's starting tensor and transforms, with the unit.
        units_per_batch: units optimized together (one test batch).

    Example:
        >>> import tempfile
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.objectives import ChannelSum
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> sweep = FeatureSweep("digits", ChannelSum("features.4", channel="all"), [MultiScaleEdgeEnergy(0.3)],
        ...                      image_shape=(1, 32, 32), steps=5, units_per_batch=16)
        >>> out = tempfile.mkdtemp()
        >>> trainer = Trainer(callbacks=[SaveSweep(out, progress=False)], logger=False, enable_progress_bar=False,
        ...                   enable_model_summary=False)
        >>> _ = trainer.test(sweep, verbose=False)
        >>> torch.load(f"{out}/input.pt").shape, sweep.image_names[:2]
        (torch.Size([32, 1, 32, 32]), ['features.4-0', 'features.4-1'])
    """

    def __init__(
        self,
        network: str | nn.Module,
        objective: UnitsObjective,
        priors: Sequence[Prior] | None = None,
        param: ImageParam | None = None,
        transforms: Sequence[Transform] | None = None,
        image_shape: Sequence[int] | None = None,
        weights: str | None = None,
        state_dict: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
        steps: int = 250,
        seed: int = 0,
        units_per_batch: int = 64,
    ) -> None:
        if isinstance(units_per_batch, bool) or not isinstance(units_per_batch, int) or units_per_batch < 1:
            raise ValueError(f"units_per_batch must be >= 1, got {units_per_batch!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        objective = build(objective)
        if objective.couples_rows:  # its chunks and processes would split the rows the objective compares
            raise ValueError(f"{type(objective).__name__} couples the rows of a batch (e.g. Diversity, Alignment), "
                             f"and a sweep optimizes every unit once, in chunks spread over processes: optimize "
                             f"the copies of a unit together with `inputopt fit` (one run holds all its rows)")
        if not isinstance(objective, UnitsObjective):
            raise ValueError(f"a sweep needs an objective with units (UnitActivation, ChannelSum, ...), got "
                             f"{type(objective).__name__}")
        net = frozen_network(network, weights, state_dict, seed)
        if image_shape is None:
            image_shape = default_image_shape(network) if isinstance(network, str) else None
            if image_shape is None:
                raise ValueError("image_shape (C, H, W) is needed: the network's own input shape is not known")
        if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)}")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for input normalization, or neither")
        super().__init__(net, [], batch_size=units_per_batch)
        self.objective = objective
        self.priors = nn.ModuleList([build(p) for p in (priors or [])])
        self.transforms = Transforms(transforms or [])
        self.normalize = Normalize(mean, std) if mean is not None else None
        self.param_config = (PixelImage() if param is None else build(param)).config()
        instantiate(self.param_config)._check_shape(tuple(image_shape))  # fail now, not at the first chunk
        self.image_shape = tuple(image_shape)
        self.optimizer_factory, optimizer_record = _optimizer(optimizer)
        self.steps = steps
        self.seed = seed

        # "all" resolved and every unit checked against the real layer, with one zero image
        with torch.no_grad():
            activations = probe(self._path(objective), torch.zeros(1, *self.image_shape),
                                network if isinstance(network, str) else None)
            objective.resolve(activations)
            objective.check_units(activations[objective.layer])
            objective.with_units(objective.units[:1]).default_targets(activations)  # its other checks, on one row
        self.units: list[int] = objective.units
        self.image_names: list[str] = objective.row_names(len(self.units))
        if len(set(self.units)) != len(self.units):
            raise ValueError(f"a sweep makes one image per unit, but units {self.units} repeat some")
        self.dataset = list(self.units)

        network_record = ({"network": network, "weights": weights, "state_dict": state_dict}
                          if isinstance(network, str) else
                          {"network": {"module": f"{type(network).__module__}.{type(network).__qualname__}",
                                       "sha256": _fingerprint(net)}})
        objective_record = objective.config()
        objective_record["init_args"].pop(objective.units_argument, None)
        self._record = _plain({
            **network_record,
            "objective": objective_record,
            "priors": [p.config() for p in self.priors],
            "param": self.param_config,
            "transforms": [t.config() for t in self.transforms.transforms],
            "image_shape": list(self.image_shape),
            "mean": mean, "std": std,
            "optimizer": optimizer_record,
            "steps": steps,
            "seed": seed,
        })

    def record(self) -> dict[str, Any]:
        """Everything that defines the images, as plain data, but the units: a sweep folder's ``sweep.yaml``."""
        return json.loads(json.dumps(self._record))

    def skip(self, names: Sequence[str]) -> None:
        """Leave out the units named ``names`` (already done): call before the test loop starts."""
        done = set(names)
        self.dataset = [u for u, n in zip(self.units, self.image_names) if n not in done]

    def _path(self, objective: UnitsObjective) -> LossPath:
        return LossPath(self.network, objective, self.priors, self.transforms, self.normalize)

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        warnings.filterwarnings("ignore", message=".*test_dataloader' does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Total length of `DataLoader` across ranks is zero.*")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Any]:
        """Optimize one chunk of units; returns its ``units``, ``names`` and ``images`` ``(B, C, H, W)``."""
        _, units = batch
        units = units.tolist()
        objective = self.objective.with_units(units)
        path = self._path(objective)
        with inner_optimization():
            param = instantiate(self.param_config).initialize(self.image_shape, keys=units, seed=self.seed)
            param = param.to(self.device)
            targets = path.default_targets(param())
            optimize(param, path, self.steps, self.optimizer_factory, targets, row_seeds(units, self.seed))
            with torch.no_grad():
                images = param().detach()
        return {"units": units, "names": objective.row_names(len(units)), "images": images}


def _open_folder(out: Path, record: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Check (or start) a sweep folder's record; return the names of the units whose file exists."""
    units = out / "units"
    path = out / RECORD
    if path.is_file():
        old = yaml.safe_load(path.read_text()) or {}
        differences = record_differences(old, record)
        if differences:
            raise ValueError(f"{out} holds the results of another sweep configuration; this one differs in\n  "
                             + "\n  ".join(differences) + f"\n(values: recorded in {path} -> this run). Use "
                             f"another sweep directory, or the configuration of {path}.")
    elif units.is_dir() and any(units.iterdir()):
        raise ValueError(f"{units} holds results but {path} is missing, so their configuration is unknown; use "
                         f"another sweep directory")
    else:
        out.mkdir(parents=True, exist_ok=True)
        partial_path = out / f"{RECORD}.partial"
        partial_path.write_text("# What defines this folder's images: everything but the units (inputopt sweep)\n"
                                + yaml.safe_dump(record, sort_keys=False))
        partial_path.replace(path)
    return [n for n in names if (units / f"{n}.pt").is_file()]


def _save_atomic(tensor: Tensor, path: Path) -> None:
    partial_path = path.with_name(path.name + ".partial")
    torch.save(tensor, partial_path)
    partial_path.replace(path)  # the file exists only once complete


class SaveSweep(Callback):
    """Write a :class:`FeatureSweep`'s results as they come, resume from them, and record the configuration.

    - At setup (rank 0 decides, every process follows): ``<dirpath>/sweep.yaml`` records what defines the
      images (:meth:`FeatureSweep.record`: everything but the units). A folder recorded with another
      configuration is refused with the differences; the same configuration with more or other units is
      fine. Units whose ``units/<name>.pt`` exists are skipped.
    - After every chunk, the process that computed it writes ``units/<layer>-<unit>.pt`` (written to a
      temporary name and renamed, so a file exists only complete) and ``images/<layer>-<unit>.png``.
    - At the end, after a barrier, rank 0 writes ``input.pt`` and ``grid.png`` of every unit in order.

    The folder must be one that every process sees (one machine, or a shared file system).

    Args:
        dirpath: the sweep folder.
        display: ``"std"`` (``0.5 + 0.1·(x − mean)/std`` per image) or ``"clamp"`` (to [0, 1]).
        nrow: images per grid row (default: a square-ish grid).
        scale: integer upscaling of the PNGs (nearest neighbour).
        progress: a progress bar of units done out of units total (rank 0; it counts every process's
            files).
    """

    def __init__(self, dirpath: str | Path = "results/sweep", display: DisplayMode = "std", nrow: int | None = None,
                 scale: int = 1, progress: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.display = display
        self.nrow = nrow
        self.scale = scale
        self.progress = progress
        self.chunks: list[list[int]] = []  # the chunks this process computed
        self.paths: list[Path] = []
        self._skipped = 0
        self._bar = None

    @staticmethod
    def _sweep(pl_module: LightningModule) -> FeatureSweep:
        if not isinstance(pl_module, FeatureSweep):
            raise TypeError(f"SaveSweep works with FeatureSweep, not {type(pl_module).__name__}")
        return pl_module

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        sweep = self._sweep(pl_module)
        problem, done = None, []
        if trainer.is_global_zero:
            try:
                done = _open_folder(self.dirpath, sweep.record(), sweep.image_names)
            except ValueError as error:
                problem = str(error)
        # every process skips the same units, so the sampler splits the same list
        problem, done = trainer.strategy.broadcast((problem, done), src=0)
        if problem is not None:
            raise ValueError(problem)
        sweep.skip(done)
        self.chunks, self.paths, self._skipped = [], [], len(done)
        if trainer.is_global_zero and self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(sweep.units), initial=len(done), unit="unit", desc="units")

    def _count_done(self, names: Sequence[str]) -> int:
        units = self.dirpath / "units"
        present = {p.name for p in units.iterdir()} if units.is_dir() else set()
        return sum(f"{n}.pt" in present for n in names)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: dict[str, Any], batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        images = outputs["images"].detach().float().cpu()
        names = outputs["names"]
        save_images(images, self.dirpath / "images", names, self.display, self.scale)
        (self.dirpath / "units").mkdir(parents=True, exist_ok=True)
        for image, name in zip(images, names):
            _save_atomic(image.clone(), self.dirpath / "units" / f"{name}.pt")
        self.chunks.append(list(outputs["units"]))
        if self._bar is not None:  # every process's files, not only this one's
            self._bar.update(self._count_done(self._sweep(pl_module).image_names) - self._bar.n)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "test":
            return
        sweep = self._sweep(pl_module)
        trainer.strategy.barrier("inputopt-sweep")  # every process's units are written
        if self._bar is not None:
            self._bar.update(len(sweep.units) - self._bar.n)
            self._bar.close()
            self._bar = None
        if not trainer.is_global_zero:
            return
        units = self.dirpath / "units"
        missing = [n for n in sweep.image_names if not (units / f"{n}.pt").is_file()]
        if missing:
            raise RuntimeError(f"units {missing} have no file in {units}; is {self.dirpath} on a file system every "
                               f"process shares?")
        x = torch.stack([torch.load(units / f"{n}.pt", weights_only=True) for n in sweep.image_names])
        _save_atomic(x, self.dirpath / "input.pt")
        grid = save_grid(x, self.dirpath / "grid.png", self.display, self.nrow, self.scale)
        self.paths = [grid, self.dirpath / "input.pt"]
        computed = len(sweep.units) - self._skipped
        rank_zero_info(f"inputopt sweep: {len(sweep.units)} units ({computed} computed now, {self._skipped} already "
                       f"done) in {grid}; one per unit in {self.dirpath / 'images'}")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class SweepCLI(LightningCLI):
    """``inputopt sweep``: the arguments of ``inputopt fit`` (config and overrides), plus ``--units_per_batch``
    and ``--sweep_dir``; builds a :class:`FeatureSweep` and its :class:`SaveSweep` (``run=False``: call
    ``cli.trainer.test(cli.model)``).

    From the config: ``model.*`` as for a fit (``init`` is refused: a sweep starts from seeded noise;
    ``batch_size``, ``freeze_done`` and ``log_per_image`` do not apply), ``trainer.max_steps`` the steps per
    chunk, ``SaveImages``' ``display``/``nrow``/``scale`` how the PNGs and the grid look, and any Trainer
    setting (devices, strategy, precision). The sweep logs nothing and checkpoints nothing: the per-unit
    files are its checkpoints, so the config's logger and its fit callbacks (``inputopt.callbacks``,
    ``ModelCheckpoint``) are left out.
    """

    def __init__(self, args: Sequence[str] | None = None) -> None:
        import_components()  # short class names in the config
        with warnings.catch_warnings():  # `inputopt sweep` passes its own arguments, the rest of sys.argv
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            super().__init__(
                InputOptimization,
                args=None if args is None else [a for a in args if a != "fit"],
                run=False,
                # the same defaults as `inputopt fit` (inputopt.fit_cli.cli)
                trainer_defaults={"max_steps": 250, "log_every_n_steps": 1},
                auto_configure_optimizers=False,
                seed_everything_default=0,
                save_config_callback=None,
                parser_kwargs={"prog": "inputopt sweep", "description": "Visualize many units, chunk by chunk, "
                               "resumable, on any number of devices: the arguments of `inputopt fit`, plus "
                               "--units_per_batch and --sweep_dir."},
            )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--units_per_batch", type=int, default=64, help="units optimized together (default 64)")
        parser.add_argument("--sweep_dir", type=str, default="results/sweep",
                            help="the sweep folder: per-unit files, grid, input.pt (default results/sweep)")

    def instantiate_classes(self) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        from inputopt.callbacks import SaveImages

        # components (objective, priors, param, callbacks) are built; InputOptimization itself is not
        self.config_init = self.parser.instantiate(self.config, instantiate_groups=False)
        model, trainer = self.config_init["model"], self.config_init["trainer"]
        if model["init"] is not None:
            raise ValueError("a sweep starts every unit from seeded noise; model.init does not apply")
        steps = self.config["trainer"]["max_steps"]
        if steps is None or steps < 0:
            raise ValueError("set the number of optimization steps per chunk with --trainer.max_steps N")
        optimizer = self.config["model"]["optimizer"]
        self.model = FeatureSweep(
            model["network"], model["objective"], model["priors"], model["param"], model["transforms"],
            model["image_shape"], model["weights"], model["state_dict"], model["mean"], model["std"],
            optimizer=None if optimizer is None else optimizer.as_dict(), steps=steps, seed=model["seed"],
            units_per_batch=self.config["units_per_batch"])
        callbacks = trainer["callbacks"] or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        saver = next((c for c in callbacks if isinstance(c, SaveImages)), SaveImages())
        kept = [c for c in callbacks
                if not isinstance(c, ModelCheckpoint) and type(c).__module__ != "inputopt.callbacks"]
        progress = self.config["trainer"]["enable_progress_bar"] is not False
        self.saver = SaveSweep(self.config["sweep_dir"], saver.display, saver.nrow, saver.scale, progress=progress)
        self.trainer = self.instantiate_trainer(callbacks=[*kept, self.saver], logger=False, enable_progress_bar=False,
                                                enable_model_summary=False, enable_checkpointing=False)


def run_sweep(args: Sequence[str], units_per_batch: int = 64, sweep_dir: str | Path = "results/sweep",
              progress: bool = True) -> list[list[int]]:
    """``inputopt sweep`` from Python: returns the chunks of units this process computed.

    Args:
        args: ``inputopt fit`` arguments, e.g. ``["--config", "configs/digits.yaml"]``.
        units_per_batch: units optimized together in one batch.
        sweep_dir: the sweep folder.
        progress: show the progress bar of units.

    Example:
        >>> run_sweep(["--config", "configs/digits.yaml", "--model.objective.init_args.unit", "all"],
        ...           units_per_batch=4)  # doctest: +SKIP
    """
    argv = [*args, "--units_per_batch", str(units_per_batch), "--sweep_dir", str(sweep_dir)]
    if not progress:
        argv += ["--trainer.enable_progress_bar", "false"]
    cli = SweepCLI(argv)
    cli.trainer.test(cli.model, verbose=False)
    return cli.saver.chunks


def sweep_main(argv: Sequence[str]) -> None:
    """``inputopt sweep [--units_per_batch N] [--sweep_dir DIR] <inputopt fit arguments>``."""
    cli = SweepCLI(list(argv))
    cli.trainer.test(cli.model, verbose=False)
