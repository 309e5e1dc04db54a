"""Writing the dataset examples of a :class:`~inputopt.runners.examples.DatasetExamples` run."""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torchvision.utils import save_image

from inputopt.callbacks._checks import _check_module, _output_dir
from inputopt.functional.display import DisplayMode
from inputopt.results import atomic_write, image_grid, strict_json, write_text
from inputopt.runners.examples import DatasetExamples

__all__ = ["SaveDatasetExamples"]


class SaveDatasetExamples(Callback):
    """At the end of a :class:`~inputopt.runners.examples.DatasetExamples` run, write ``examples.json`` (its :attr:`~inputopt.runners.examples.DatasetExamples.results`)
    and ``examples.png`` (one row per unit, its ``k`` examples best first), and log the picture to
    TensorBoard (tag ``dataset_examples``). Only rank 0 writes.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        display: ``"clamp"`` (pixel space, the default) or ``"std"``.
        scale: integer upscaling of the picture (nearest neighbour), for small images.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SaveDatasetExamples("results/digits_examples", scale=2)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, display: DisplayMode = "clamp", scale: int = 1) -> None:
        self.dirpath = dirpath
        self.display = display
        self.scale = scale
        self.paths: list[Path] = []

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _check_module(pl_module, "SaveDatasetExamples", DatasetExamples)
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "examples.json", strict_json(pl_module.results, indent=1) + "\n")
        images = pl_module.example_images()
        grid = image_grid(images.flatten(0, 1), self.display, nrow=images.shape[1], scale=self.scale)
        atomic_write(out / "examples.png", lambda handle: save_image(grid, handle, format="png"))
        self.paths = [out / "examples.json", out / "examples.png"]
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("dataset_examples", grid, 0)
        rank_zero_info(f"inputopt: top-{pl_module.k} examples of {len(pl_module.units)} units of "
                       f"{pl_module.layer!r} in {out}")
