"""Writing the inversions of a :class:`~inputopt.runners.inversion.FeatureInversion` run."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchvision.utils import save_image

from inputopt.callbacks._checks import _check_display, _check_module, _output_dir
from inputopt.functional.display import DisplayMode
from inputopt.results import atomic_write, image_grid, write_text
from inputopt.runners.inversion import FeatureInversion

__all__ = ["SaveInversions", "pairs_grid"]


def pairs_grid(originals: Tensor, inversions: Tensor, columns: int = 8, display: DisplayMode = "clamp",
               scale: int = 1) -> Tensor:
    """One ``(3, H', W')`` picture of images and their inversions: rows of up to ``columns`` originals, each row
    above the row of their inversions (a last, shorter pair of rows is filled with white).

    Example:
        >>> pairs_grid(torch.zeros(3, 1, 8, 8), torch.ones(3, 1, 8, 8), columns=2).shape  # 2 pairs of rows
        torch.Size([3, 42, 22])
    """
    if originals.shape != inversions.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and inversions {tuple(inversions.shape)} differ")
    columns = max(1, min(columns, len(originals)))
    rows = []
    for start in range(0, len(originals), columns):
        for images in (originals, inversions):
            row = images[start:start + columns]
            blank = torch.ones(columns - len(row), *row.shape[1:], dtype=row.dtype)
            rows.append(torch.cat([row, blank]))
    return image_grid(torch.cat(rows), display, nrow=columns, scale=scale)


class SaveInversions(Callback):
    """At the end of a :class:`~inputopt.runners.inversion.FeatureInversion` run, write to ``dirpath``:

    - ``inversions.pt``: the runner's :attr:`~inputopt.runners.inversion.FeatureInversion.results` (``indices``,
      ``images``, ``scores``, ``start_scores``), with its ``layer`` and ``metric``;
    - ``inversions.png``: the images (read back from the data set) above their inversions, ``columns`` a row;
    - ``scores.csv``: per image its index, the score of the starting noise and the final score;

    and log the picture to TensorBoard (tag ``inversions``) when the trainer has a TensorBoard logger. The
    results are gathered from every process by the runner; only rank 0 writes.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        columns: images per row of the picture.
        display: ``"clamp"`` (pixel space, the default) or ``"std"``.
        scale: integer upscaling of the picture (nearest neighbour), for small images.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SaveInversions("results/digits_inversion", scale=3)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, columns: int = 8, display: DisplayMode = "clamp",
                 scale: int = 1) -> None:
        if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
            raise ValueError(f"columns must be an int >= 1, got {columns!r}")
        _check_display(display, None, scale)
        self.dirpath, self.columns, self.display, self.scale = dirpath, columns, display, scale
        self.paths: list[Path] = []

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _check_module(pl_module, "SaveInversions", FeatureInversion)
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        out.mkdir(parents=True, exist_ok=True)
        results, objective = pl_module.results, pl_module.objective
        saved = {**results, "layer": objective.layer, "metric": objective.metric}
        atomic_write(out / "inversions.pt", lambda handle: torch.save(saved, handle))
        originals = torch.stack([pl_module.dataset_image(i) for i in results["indices"].tolist()])
        grid = pairs_grid(originals, results["images"], self.columns, self.display, self.scale)
        atomic_write(out / "inversions.png", lambda handle: save_image(grid, handle, format="png"))
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["index", "start_score", "score"])
        writer.writerows(zip(results["indices"].tolist(), results["start_scores"].tolist(),
                             results["scores"].tolist()))
        write_text(out / "scores.csv", table.getvalue())
        self.paths = [out / "inversions.pt", out / "inversions.png", out / "scores.csv"]
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("inversions", grid, 0)
        rank_zero_info(f"inputopt: {len(results['indices'])} inversions of {objective.layer!r} in {out} (mean score "
                       f"{results['scores'].mean():.4g}, from {results['start_scores'].mean():.4g} at the start)")
