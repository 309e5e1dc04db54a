"""The files of a shared-input run (:class:`~inputopt.runners.shared.SharedInputOptimization`)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from inputopt.callbacks._checks import _output_dir
from inputopt.results import atomic_write, save_grid, write_text

__all__ = ["SaveSharedInput"]


class SaveSharedInput(Callback):
    """Write a shared-input run's results: ``shared.pt`` and ``shared.png`` (the perturbation or the patch),
    ``examples.png`` (held-out images with it, the first ``num_examples``), ``history.csv`` (step, held-out
    fooling rate, rewritten after every validation, so an interrupted run keeps its curve), and a line of
    predictions per example in ``examples.csv`` (clean and adversarial class names, when the network has them).

    Args:
        dirpath: where to write (default: the logger's directory, else the Trainer's root directory).
        display: ``"perturbation"`` (``0.5 + δ/(2·max|δ|)``: grey is unchanged) or ``"clamp"`` (a patch in [0, 1]).
        num_examples: held-out images in ``examples.png``.
        scale: integer upscaling of the pictures.

    Example:
        >>> callback = SaveSharedInput("results/universal", display="perturbation")
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, display: str = "clamp", num_examples: int = 8,
                 scale: int = 1) -> None:
        if display not in ("perturbation", "clamp"):
            raise ValueError(f"display must be 'perturbation' or 'clamp', got {display!r}")
        self.dirpath, self.display, self.num_examples, self.scale = dirpath, display, num_examples, scale

    def directory(self, trainer: Trainer) -> Path:
        return _output_dir(trainer, self.dirpath)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        directory = self.directory(trainer)  # on every process: trainer.log_dir is a collective under DDP
        if trainer.is_global_zero and not trainer.sanity_checking and getattr(pl_module, "history", None):
            table = io.StringIO()
            writer = csv.writer(table)
            writer.writerow(["step", "fooling_rate"])
            writer.writerows(pl_module.history)
            write_text(directory / "history.csv", table.getvalue())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        directory = self.directory(trainer)  # on every process: trainer.log_dir is a collective under DDP
        if not trainer.is_global_zero:
            return
        directory.mkdir(parents=True, exist_ok=True)
        shared = pl_module.shared().cpu()
        atomic_write(directory / "shared.pt", lambda handle: torch.save(shared, handle))
        picture = shared
        if self.display == "perturbation":
            picture = 0.5 + shared / (2 * shared.abs().max().clamp_min(1e-12))
        save_grid(picture, directory / "shared.png", "clamp", scale=self.scale)
        data = pl_module.val_dataset if pl_module.val_dataset is not None else pl_module.dataset
        count = min(self.num_examples, len(data))
        if count:
            images = torch.stack([torch.as_tensor(data[i][0]).float() for i in range(count)]).to(pl_module.device)
            out = pl_module.evaluate(images, list(range(count)))
            save_grid(torch.cat([images, out["images"]]).cpu(), directory / "examples.png", "clamp", nrow=count,
                      scale=self.scale)
            names = pl_module.class_names
            def name(c: int) -> str:
                return names[c] if names else str(c)
            table = io.StringIO()
            writer = csv.writer(table)
            writer.writerow(["example", "clean", "adversarial"])
            for i, (a, b) in enumerate(zip(out["clean"].tolist(), out["adversarial"].tolist())):
                writer.writerow([i, name(a), name(b)])
            write_text(directory / "examples.csv", table.getvalue())
        rank_zero_info(f"inputopt: wrote {directory}/shared.pt, shared.png, examples.png")
