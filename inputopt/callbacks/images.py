"""Images of a fit: files on disk (:class:`SaveImages`) and TensorBoard (:class:`LogImages`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from inputopt.callbacks._checks import _check_display, _check_module, _output_dir
from inputopt.callbacks.checkpoints import RunLock
from inputopt.functional.display import DisplayMode
from inputopt.module import InputOptimization
from inputopt.results import (atomic_write, check_contained, image_grid, record_written, remove_written, save_grid,
                              save_images)


class SaveImages(Callback):
    """At the end of a run, write ``grid.png``, one PNG per image and ``input.pt`` (the images as a tensor).

    A folder it cannot write into is refused at setup, before the first step, and so is a folder another run
    holds: it holds its folder (:class:`~inputopt.callbacks.checkpoints.RunLock`) from setup to the end of the run,
    so two runs with one ``dirpath`` cannot overwrite each other's files. A resume with no step left
    (a checkpoint at or past ``max_steps``) says so and writes the checkpoint's images. Once the first step
    of a fit has ended finite, the folder is that run's: the previous run's ``grid.png``, ``input.pt`` and
    PNGs are removed then (a run that fails before leaves them whole, and one that fails after leaves no
    images of another run beside its checkpoint), and the PNGs of units a previous run had and this one has
    not are removed when it writes its own. Only files the library wrote there are ever removed (a manifest,
    ``.inputopt-written.json``, lists them): ``SaveImages(dirpath=".")`` leaves the user's own
    ``images/*.png`` alone. Every file is written whole or not at all, and a symlinked ``images/`` that leads
    out of the folder is refused at setup. A run stopped by an
    error (a non-finite loss included) writes nothing, so the results of an earlier run stay as they were.

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
        self._wrote = False
        self._lock: RunLock | None = None
        self._first_step: int | None = None

    def directory(self, trainer: Trainer) -> Path:
        return _output_dir(trainer, self.dirpath)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # find an unwritable results folder before the first step, not after the last (creating nothing yet)
        self._wrote = False
        out = self.directory(trainer)
        existing = next(p for p in (out, *out.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"SaveImages cannot write its results into {out}: {existing} is "
                                  f"{'not a folder' if not existing.is_dir() else 'not writable'}")
        check_contained(out / "images", out)  # a symlinked images/ would write outside the results folder
        if trainer.is_global_zero:  # one run per results folder, even when runs of other log folders share it
            self._lock = RunLock(out).acquire()
        self._first_step: int | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if self._first_step is not None and trainer.global_step > self._first_step:
            self._first_step = None  # the first step of this fit ended finite: the folder is this run's now
            if trainer.is_global_zero:
                self._remove_previous(self.directory(trainer))

    @staticmethod
    def _remove_previous(out: Path, keep: set[str] = frozenset()) -> None:
        """Remove the results a previous run wrote here (all but ``keep``'s PNGs), so that this run's
        checkpoints and config never sit next to another run's images. Only the files the library recorded
        as written there (:func:`~inputopt.results.record_written`) are removed: never the user's own."""
        remove_written(out, [out / "images" / name for name in keep], select=lambda name: (
            (name in ("grid.png", "input.pt") and not keep) or (name.startswith("images/") and name.endswith(".png"))))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._release()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, pl_module)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._wrote:  # a resume at or past max_steps: no step, no on_train_end
            rank_zero_info(f"inputopt: the checkpoint is at step {trainer.global_step} and max_steps is "
                           f"{trainer.max_steps}: no step left to run (raise --trainer.max_steps to go on); "
                           f"writing the checkpoint's images")
            self._write(trainer, pl_module)

    def _write(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "SaveImages")
        self._wrote = True
        out = self.directory(trainer)  # on every process: trainer.log_dir is a collective under DDP
        if not trainer.is_global_zero:
            return
        x = module.images().cpu()
        check_contained(out / "images", out)
        grid = save_grid(x, out / "grid.png", self.display, self.nrow, self.scale)
        singles = save_images(x, out / "images", module.image_names(), self.display, self.scale)
        self._remove_previous(out, keep={p.name for p in singles})  # a previous run's other units
        atomic_write(out / "input.pt", lambda handle: torch.save(x, handle))
        self.paths = [grid, *singles, out / "input.pt"]
        record_written(out, self.paths)
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
