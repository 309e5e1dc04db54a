"""Side effects of a run: images on disk, per-step prediction tables, the random-sphere check."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities import rank_zero_info
from torchvision.utils import save_image

from inputopt.functional.display import DisplayMode
from inputopt.functional.sphere import sphere_check
from inputopt.module import InputOptimization
from inputopt.results import adversarial_grid, image_grid, save_grid, save_images

__all__ = ["CheckpointOnInterrupt", "InputSummary", "LogImages", "PredictionTable", "SaveAttackResults", "SaveImages",
           "SphereCheck"]


def _check_module(pl_module: LightningModule, who: str) -> InputOptimization:
    if not isinstance(pl_module, InputOptimization):
        raise TypeError(f"{who} works with InputOptimization, not {type(pl_module).__name__}")
    return pl_module


def _check_display(display: str, nrow: int | None, scale: int) -> None:
    """The display arguments of the image callbacks, checked when they are built (not at the end of a run)."""
    if display not in ("std", "clamp"):
        raise ValueError(f"display must be 'std' or 'clamp', got {display!r}")
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1):
        raise ValueError(f"nrow must be an int >= 1 or None, got {nrow!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")


class SaveImages(Callback):
    """At the end of a run, write ``grid.png``, one PNG per image and ``input.pt`` (the images as a tensor).

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        display: ``"std"`` (``0.5 + 0.1·(x − mean)/std`` per image) or ``"clamp"`` (to [0, 1]).
        nrow: images per grid row (default: a square-ish grid).
        scale: integer upscaling of the PNGs (nearest neighbour), for small images.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=10, callbacks=[SaveImages("results/digits", display="clamp")])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, display: DisplayMode = "std",
                 nrow: int | None = None, scale: int = 1) -> None:
        _check_display(display, nrow, scale)
        self.dirpath = dirpath
        self.display = display
        self.nrow = nrow
        self.scale = scale
        self.paths: list[Path] = []

    def directory(self, trainer: Trainer) -> Path:
        return Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "SaveImages")
        out = self.directory(trainer)  # on every process: trainer.log_dir is a collective under DDP
        if not trainer.is_global_zero:
            return
        x = module.images().cpu()
        grid = save_grid(x, out / "grid.png", self.display, self.nrow, self.scale)
        singles = save_images(x, out / "images", module.image_names(), self.display, self.scale)
        torch.save(x, out / "input.pt")
        self.paths = [grid, *singles, out / "input.pt"]
        rank_zero_info(f"inputopt: wrote {grid} ({x.shape[0]} images; one per image in {out / 'images'})")


class LogImages(Callback):
    """Log the current images as one image grid to TensorBoard every ``every_n_steps`` steps (tag
    ``inputs``), and the final inputs at the end (tag ``inputs/final``).

    Works with any logger that has TensorBoard's ``add_image`` (``TensorBoardLogger``); others are skipped.
    Only rank 0 logs.

    Args:
        every_n_steps: logging period in optimization steps (step 0 is the starting input).
        display: ``"std"`` (``0.5 + 0.1·(x − mean)/std`` per image) or ``"clamp"`` (to [0, 1]).
        nrow: images per grid row (default: a square-ish grid).
        scale: integer upscaling (nearest neighbour), for small images.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=100, callbacks=[LogImages(every_n_steps=10)])
    """

    def __init__(self, every_n_steps: int = 25, display: DisplayMode = "std", nrow: int | None = None,
                 scale: int = 1) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        _check_display(display, nrow, scale)
        self.every_n_steps = every_n_steps
        self.display = display
        self.nrow = nrow
        self.scale = scale

    def _log(self, trainer: Trainer, module: InputOptimization, tag: str) -> None:
        if not trainer.is_global_zero:
            return
        grid = image_grid(module.images().cpu(), self.display, self.nrow, self.scale)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image(tag, grid, global_step=trainer.global_step)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, _check_module(pl_module, "LogImages"), "inputs")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, _check_module(pl_module, "LogImages"), "inputs")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._log(trainer, _check_module(pl_module, "LogImages"), "inputs/final")


class PredictionTable(Callback):
    """Record the predicted class of every image before the first step and after every ``k`` steps;
    print the table at the end (class names when the network's are known).

    Attributes:
        steps: the recorded steps (0 is the starting input).
        predictions: one ``(B,)`` tensor of class indices per recorded step.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=15, callbacks=[PredictionTable()])
    """

    def __init__(self, every_n_steps: int = 1, print_table: bool = True, width: int = 18) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.print_table = print_table
        self.width = width
        self.steps: list[int] = []
        self.predictions: list[torch.Tensor] = []

    def _record(self, step: int, module: InputOptimization) -> None:
        self.steps.append(step)
        self.predictions.append(module.predict_classes().cpu())

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.steps, self.predictions = [], []
        self._record(trainer.global_step, _check_module(pl_module, "PredictionTable"))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer.global_step, _check_module(pl_module, "PredictionTable"))

    def table(self, names: list[str] | None = None) -> str:
        """The table as text: a row per recorded step, a column per image."""
        def label(c: int) -> str:
            text = names[c] if names is not None else str(c)
            return text[: self.width].ljust(self.width)

        count = self.predictions[0].numel() if self.predictions else 0
        lines = ["step  " + " ".join(f"image {i}".ljust(self.width) for i in range(count))]
        for step, predicted in zip(self.steps, self.predictions):
            lines.append(f"{step:<5} " + " ".join(label(int(c)) for c in predicted))
        return "\n".join(lines)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.print_table and trainer.is_global_zero:
            rank_zero_info("Predicted class after each step:\n" + self.table(pl_module.class_names))


class SphereCheck(Callback):
    """At the end of a run, for each image: the fraction of ``num_points`` random points on the sphere
    centred on the starting image ``x`` with radius ``factor·‖x − x̃‖`` whose label differs from the
    label at ``x`` (``x̃`` the optimized image). Adversarial examples are special when this stays low.

    Attributes:
        fractions: ``(B,)`` tensor of fractions (NaN for an image that did not move).
        radii: ``(B,)`` tensor of the radii used.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=15, callbacks=[SphereCheck(factor=2.0, num_points=1000)])
    """

    def __init__(self, factor: float = 2.0, num_points: int = 1000, seed: int = 0, chunk_size: int = 250) -> None:
        if factor <= 0 or num_points < 1:
            raise ValueError(f"factor must be > 0 and num_points >= 1, got {factor}, {num_points}")
        self.factor = factor
        self.num_points = num_points
        self.seed = seed
        self.chunk_size = chunk_size
        self.fractions = torch.empty(0)
        self.radii = torch.empty(0)

    def check(self, module: InputOptimization, progress: bool = False) -> torch.Tensor:
        """Run the check on the module's current images; returns and stores :attr:`fractions`."""
        self.fractions, self.radii = sphere_check(module.predict_classes, module.start.detach(), module.images(),
                                                  self.factor, self.num_points, self.seed, self.chunk_size, progress)
        return self.fractions

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "SphereCheck")
        fractions = self.check(module, progress=trainer.is_global_zero and trainer.progress_bar_callback is not None)
        lines = [f"image {i}: radius {r:.4g}, label changed at {f:.1%} of {self.num_points} random points"
                 for i, (r, f) in enumerate(zip(self.radii.tolist(), fractions.tolist()))]
        rank_zero_info(f"Random-sphere check (radius = {self.factor:g}·‖x − x̃‖):\n" + "\n".join(lines))


class CheckpointOnInterrupt(Callback):
    """Save a checkpoint when a run stops on an exception, Ctrl-C or SIGTERM.

    By default it writes ``last.ckpt`` in the ``ModelCheckpoint``'s directory (else
    ``<log_dir>/checkpoints``), the file ``--ckpt_path last`` resumes from: the state at the moment of the
    interruption replaces the last periodic one. (Lightning's ``OnExceptionCheckpoint`` would also make
    every later ``fit`` in that directory resume silently, even with another objective; this does not.)

    Args:
        dirpath: where to save (default: see above).
        filename: file name without extension.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from lightning.pytorch.callbacks import ModelCheckpoint
        >>> trainer = Trainer(max_steps=1000, callbacks=[ModelCheckpoint(every_n_train_steps=50, save_last=True),
        ...                                              CheckpointOnInterrupt()])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, filename: str = "last") -> None:
        if not filename:
            raise ValueError("filename cannot be empty")
        self.dirpath = dirpath
        self.filename = filename
        self.saved: Path | None = None

    def path(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / f"{self.filename}.ckpt"
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None) or os.path.join(trainer.log_dir or trainer.default_root_dir,
                                                                          "checkpoints")
        return Path(directory) / f"{self.filename}.ckpt"

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self.saved = self.path(trainer)
        trainer.save_checkpoint(self.saved)
        rank_zero_info(f"inputopt: run interrupted at step {trainer.global_step} ({type(exception).__name__}); "
                       f"saved {self.saved}, resume with --ckpt_path last")


class SaveAttackResults(Callback):
    """At the end of an :class:`~inputopt.runner.AttackEvaluation`, write ``results.json`` and
    ``results.csv`` (one row per ε) and ``examples.png`` (clean | adversarial | magnified perturbation per
    ε, for the first examples), print the table, and log the picture to TensorBoard.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        scale: integer upscaling of the picture (nearest neighbour), for small images.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SaveAttackResults("results/digits_pgd", scale=3)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, scale: int = 1) -> None:
        self.dirpath = dirpath
        self.scale = scale
        self.paths: list[Path] = []

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from inputopt.runner import AttackEvaluation

        if not isinstance(pl_module, AttackEvaluation):
            raise TypeError(f"SaveAttackResults works with AttackEvaluation, not {type(pl_module).__name__}")
        out = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        out.mkdir(parents=True, exist_ok=True)
        rows = pl_module.results
        (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        with open(out / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        self.paths = [out / "results.json", out / "results.csv"]
        examples = pl_module.examples
        if examples:
            grid = adversarial_grid(examples["clean"], examples["adversarial"], self.scale)
            save_image(grid, out / "examples.png")
            self.paths.append(out / "examples.png")
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("examples", grid, 0)
        rank_zero_info(format_results(rows) + f"\nResults in {out}")


def format_results(rows: list[dict]) -> str:
    """The results of an attack evaluation as an aligned text table (one row per ε).

    Example:
        >>> print(format_results([{"eps": 0.1, "robust_accuracy": 0.5}]))
        eps  robust_accuracy
        0.1  0.5
    """
    if not rows:
        return "(no results)"
    names = list(rows[0])
    cells = [[name for name in names]] + [[_cell(row[name]) for name in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class InputSummary(ModelSummary):
    """The summary printed when a fit starts, which calls the input what it is: Lightning's table would call
    the optimized pixels "Trainable params".

    :class:`InputOptimization` puts it in place of the Trainer's ``ModelSummary`` (when the summary is on).
    For other modules it prints Lightning's table.

    Example:
        >>> from inputopt.objectives import UnitActivation
        >>> module = InputOptimization("digits", UnitActivation(None, unit=[3, 8]))
        >>> print(InputSummary.describe(module))  # doctest: +NORMALIZE_WHITESPACE
        Optimized input: 2 images of shape (1, 32, 32), PixelImage: 2.0 K trainable values
        Network: digits (frozen, 89.6 K parameters, not optimized)
        Objective: UnitActivation(layer=None, unit=[3, 8], position=None)
        Priors: none
        Transforms: none
    """

    @staticmethod
    def describe(module: InputOptimization) -> str:
        """The summary's lines for ``module``."""
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

        images = module.images()
        values = sum(p.numel() for p in module.param.parameters())
        weights = sum(p.numel() for p in module.network.parameters())
        name = module.network_name or type(module.network).__name__
        return "\n".join([
            f"Optimized input: {images.shape[0]} images of shape {tuple(images.shape[1:])}, "
            f"{type(module.param).__name__}: {get_human_readable_count(values)} trainable values",
            f"Network: {name} (frozen, {get_human_readable_count(weights)} parameters, not optimized)",
            f"Objective: {module.objective!r}",
            f"Priors: {', '.join(repr(p) for p in module.priors) or 'none'}",
            f"Transforms: {', '.join(repr(t) for t in module.transforms.transforms) or 'none'}",
        ])

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not isinstance(pl_module, InputOptimization):
            super().on_fit_start(trainer, pl_module)
        elif self._max_depth:
            rank_zero_info(self.describe(pl_module))
