"""Writing the dataset examples of a :class:`~inputopt.runners.examples.DatasetExamples` run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torchvision.utils import save_image

from inputopt.callbacks._checks import _check_module, _output_dir
from inputopt.functional.display import DisplayMode
from inputopt.results import atomic_write, example_sheet, strict_json, write_text
from inputopt.runners.examples import DatasetExamples

__all__ = ["SaveDatasetExamples", "examples_sheet"]


def _caption(value: float, label: int | None, names: dict | None) -> str:
    if label is None:
        return f"{value:.3g}"
    name = (names or {}).get(label, (names or {}).get(str(label), f"class {label}"))
    return f"{value:.3g}\n{name}"


def examples_sheet(runner: DatasetExamples, tile: int = 96, display: DisplayMode = "clamp") -> Tensor:
    """The picture of a finished :class:`~inputopt.runners.examples.DatasetExamples` run: per unit, its number,
    then a row of its top-``k`` examples (and of its bottom-``k`` and percentile examples, when the run kept
    them), each captioned with the unit's activation on it and the class of the image (for labelled data).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> from inputopt.objectives import ChannelSum
        >>> from inputopt.problem import Problem
        >>> runner = DatasetExamples(Problem("digits", ChannelSum("features.4", [0, 5])), Digits(limit=40), k=3)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> examples_sheet(runner, tile=32).shape
        torch.Size([3, 164, 168])
    """
    results = runner.results
    kind = "channel" if results["map_shape"] is not None else ("class" if results["layer"] is None else "feature")
    groups: list[tuple[str, Any, list]] = [("top", results, runner.example_images("top"))]
    if "bottom" in results:
        groups.append(("bottom", results["bottom"], runner.example_images("bottom")))
    if "percentiles" in results:
        groups.append(("pctl", results["percentiles"], runner.example_images("percentiles")))
    names = results.get("class_names")
    blocks = []
    for row, unit in enumerate(results["units"]):
        rows = []
        for label, found, images in groups:
            captions = [_caption(v, lab, names) if i >= 0 else "" for v, i, lab in
                        zip(found["values"][row], found["indices"][row], found["labels"][row])]
            if label == "pctl":
                captions = [f"p{q:g} {c}" for q, c in zip(found["q"], captions)]
            rows.append({"label": label, "images": images[row], "captions": captions})
        blocks.append({"title": f"{kind} {unit}", "rows": rows})
    return example_sheet(blocks, tile, display)


class SaveDatasetExamples(Callback):
    """At the end of a :class:`~inputopt.runners.examples.DatasetExamples` run, write ``examples.json`` (its
    :attr:`~inputopt.runners.examples.DatasetExamples.results`) and ``examples.png`` (:func:`examples_sheet`:
    per unit its number and its examples, each with its activation and class), and log the picture to
    TensorBoard (tag ``dataset_examples``). Only rank 0 writes.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        display: ``"clamp"`` (pixel space, the default) or ``"std"``.
        tile: the side in pixels of each example in the picture.
        picture: write ``examples.png`` and log it (``False``: only ``examples.json``, as an atlas does: its unit
            pages show the examples themselves).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SaveDatasetExamples("results/digits_examples", tile=64)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, display: DisplayMode = "clamp", tile: int = 96,
                 picture: bool = True) -> None:
        if isinstance(tile, bool) or not isinstance(tile, int) or tile < 8:
            raise ValueError(f"tile must be an int >= 8 (pixels), got {tile!r}")
        self.dirpath = dirpath
        self.display = display
        self.tile = tile
        self.picture = picture
        self.paths: list[Path] = []

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _check_module(pl_module, "SaveDatasetExamples", DatasetExamples)
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "examples.json", strict_json(pl_module.results, indent=1) + "\n")
        self.paths = [out / "examples.json"]
        if self.picture:
            sheet = examples_sheet(pl_module, self.tile, self.display)
            atomic_write(out / "examples.png", lambda handle: save_image(sheet, handle, format="png"))
            self.paths.append(out / "examples.png")
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("dataset_examples", sheet, 0)
        skipped = pl_module.results.get("skipped", 0)
        rank_zero_info(f"inputopt: top-{pl_module.k} examples of {len(pl_module.units)} units of "
                       f"{pl_module.layer!r} in {out}" + (f" ({skipped} unreadable images skipped)" if skipped else ""))
