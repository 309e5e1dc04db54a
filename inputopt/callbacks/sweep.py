"""Writing a feature sweep's results: :class:`SaveSweep` writes each unit as it finishes, resumes from the files
and refuses to mix in the results of another configuration."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from inputopt.callbacks.checkpoints import RunLock, RunLockedError
from inputopt.functional.display import DisplayMode
from inputopt.results import atomic_write, check_contained, file_name, read_record, save_grid, save_images
from inputopt.runners.sweep import RECORD, FeatureSweep, record_differences

__all__ = ["SaveSweep"]


def _open_folder(out: Path, record: dict[str, Any], names: Sequence[str]) -> list[str]:
    """Check (or start) a sweep folder's record; return the names of the units whose file exists."""
    units = out / "units"
    path = out / RECORD
    if path.is_file():
        old = read_record(path) or {}
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
        partial_path = out / f"{RECORD}.{os.getpid()}.partial"
        partial_path.write_text("# What defines this folder's images: everything but the units (inputopt sweep)\n"
                                + yaml.safe_dump(record, sort_keys=False))
        try:  # the record exists only complete, and only the first of two sweeps creates it
            os.link(partial_path, path)
        except FileExistsError:  # another sweep recorded its configuration first: compare with it
            return _open_folder(out, record, names)
        finally:
            partial_path.unlink(missing_ok=True)
    return [n for n in names if (units / f"{file_name(n)}.pt").is_file()]


def _save_atomic(tensor: Tensor, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(tensor, handle))  # the file exists only once complete


class SaveSweep(Callback):
    """Write a :class:`~inputopt.runners.sweep.FeatureSweep`'s results as they come, resume from them, and record the configuration.

    - At setup (rank 0 decides, every process follows): rank 0 holds the folder
      (:class:`~inputopt.callbacks.checkpoints.RunLock`) until the sweep ends, so a second sweep into it stops
      before computing anything; ``<dirpath>/sweep.yaml`` records what defines the
      images (:meth:`~inputopt.runners.sweep.FeatureSweep.record`: everything but the units). A folder recorded with another
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
        self._lock: RunLock | None = None

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
                for sub in ("units", "images"):  # a symlinked subfolder would write outside the sweep folder
                    check_contained(Path(self.dirpath) / sub, self.dirpath)
                self._lock = RunLock(self.dirpath).acquire()  # one sweep per folder, from setup to the end
                done = _open_folder(self.dirpath, sweep.record(), sweep.image_names)
                self._check_done_units(done, sweep.image_shape)
            except (ValueError, RunLockedError) as error:
                problem = error
                self._release()
        # every process skips the same units, so the sampler splits the same list
        problem, done = trainer.strategy.broadcast((problem, done), src=0)
        if problem is not None:
            raise type(problem)(str(problem))
        sweep.skip(done)
        self.chunks, self.paths, self._skipped = [], [], len(done)
        if trainer.is_global_zero and self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=len(sweep.units), initial=len(done), unit="unit", desc="units")

    def _check_done_units(self, done: Sequence[str], image_shape: Sequence[int]) -> None:
        """Read the unit files a resumed sweep will skip, now rather than at the end: a corrupt or wrong-shaped
        file is named (delete it, and the next run computes its unit again); a unit whose PNG was deleted gets
        it back."""
        for name in done:
            path = self.dirpath / "units" / f"{name}.pt"
            try:
                image = torch.load(path, weights_only=True)
            except Exception as error:  # truncated, not a torch file, not plain data
                raise ValueError(f"cannot read the sweep's unit file {str(path)!r} ({error}); delete it and run the "
                                 f"sweep again to compute this unit") from error
            if not isinstance(image, Tensor) or tuple(image.shape) != tuple(image_shape) \
                    or not torch.isfinite(image).all():
                found = f"shape {tuple(image.shape)}" if isinstance(image, Tensor) else type(image).__name__
                raise ValueError(f"the sweep's unit file {str(path)!r} holds {found}, not a finite image of shape "
                                 f"{tuple(image_shape)}; delete it and run the sweep again to compute this unit")
            if not (self.dirpath / "images" / f"{name}.png").is_file():
                save_images(image.unsqueeze(0).float(), self.dirpath / "images", [name], self.display, self.scale)

    def _count_done(self, names: Sequence[str]) -> int:
        units = self.dirpath / "units"
        present = {p.name for p in units.iterdir()} if units.is_dir() else set()
        return sum(f"{file_name(n)}.pt" in present for n in names)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: dict[str, Any], batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        images = outputs["images"].detach().float().cpu()
        names = outputs["names"]
        save_images(images, self.dirpath / "images", names, self.display, self.scale)
        (self.dirpath / "units").mkdir(parents=True, exist_ok=True)
        for image, name in zip(images, names):
            _save_atomic(image.clone(), self.dirpath / "units" / f"{file_name(name)}.pt")
        self.chunks.append(list(outputs["units"]))
        if self._bar is not None:  # every process's files, not only this one's
            self._bar.update(self._count_done(self._sweep(pl_module).image_names) - self._bar.n)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "test":
            return
        try:
            self._finish(trainer, pl_module)
        finally:
            self._release()

    def _finish(self, trainer: Trainer, pl_module: LightningModule) -> None:
        sweep = self._sweep(pl_module)
        trainer.strategy.barrier("inputopt-sweep")  # every process's units are written
        if self._bar is not None:
            self._bar.update(len(sweep.units) - self._bar.n)
            self._bar.close()
            self._bar = None
        if not trainer.is_global_zero:
            return
        units = self.dirpath / "units"
        missing = [n for n in sweep.image_names if not (units / f"{file_name(n)}.pt").is_file()]
        if missing:
            raise RuntimeError(f"units {missing} have no file in {units}; is {self.dirpath} on a file system every "
                               f"process shares?")
        x = torch.stack([torch.load(units / f"{file_name(n)}.pt", weights_only=True) for n in sweep.image_names])
        _save_atomic(x, self.dirpath / "input.pt")
        grid = save_grid(x, self.dirpath / "grid.png", self.display, self.nrow, self.scale)
        self.paths = [grid, self.dirpath / "input.pt"]
        computed = len(sweep.units) - self._skipped
        rank_zero_info(f"inputopt sweep: {len(sweep.units)} units ({computed} computed now, {self._skipped} already "
                       f"done) in {grid}; one per unit in {self.dirpath / 'images'}")

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._release()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
