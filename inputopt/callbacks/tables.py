"""Checks and tables of a fit: the per-step prediction table and the random-sphere check."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from inputopt.callbacks._checks import _check_module
from inputopt.functional.sphere import sphere_check
from inputopt.module import InputOptimization


class PredictionTable(Callback):
    """Record the predicted class of every image before the first step and after every ``k`` steps;
    print the table at the end (class names when the network's are known).

    With a few images, the table has a column per image. With many (more than ``max_rows``, unless
    ``compact`` says otherwise), it is compact: per recorded step, the fraction of images whose predicted
    class changed from the start (and, with ``freeze_done``, the fraction that are done), then the first
    ``max_rows`` images as examples: the class at the start, at the end, and the first recorded step at which
    it changed.

    Args:
        every_n_steps: record every ``every_n_steps`` steps (and the start).
        print_table: print the table at the end of the run.
        width: the width of a class name in the table (longer names are cut).
        compact: ``True``/``False`` force the compact/full table; ``None``: compact with more than
            ``max_rows`` images.
        max_rows: the example images of the compact table, and the most images of a full table by default.

    Attributes:
        steps: the recorded steps (0 is the starting input).
        predictions: one ``(B,)`` tensor of class indices per recorded step.
        done: one ``(B,)`` boolean tensor per recorded step, when the module has ``freeze_done`` (else empty).

    Example:
        >>> table = PredictionTable(max_rows=2)
        >>> table.steps = [0, 1, 2]
        >>> table.predictions = [torch.tensor([3, 5, 7]), torch.tensor([3, 8, 7]), torch.tensor([2, 8, 7])]
        >>> print(table.table())
        step  changed
        0     0.0%
        1     33.3%
        2     66.7%
        first 2 of 3 images: start -> end (changed at step)
        image 0  3 -> 2  (2)
        image 1  5 -> 8  (1)
        >>> print(table.table(compact=False, names=[str(c) * 2 for c in range(10)]))
        step  image 0            image 1            image 2
        0     33                 55                 77
        1     33                 88                 77
        2     22                 88                 77
    """

    def __init__(self, every_n_steps: int = 1, print_table: bool = True, width: int = 18,
                 compact: bool | None = None, max_rows: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        if compact is not None and not isinstance(compact, bool):
            raise ValueError(f"compact must be true, false or null (compact with more than max_rows images), "
                             f"got {compact!r}")
        self.every_n_steps = every_n_steps
        self.print_table = print_table
        self.width = width
        self.compact = compact
        self.max_rows = max_rows
        self.steps: list[int] = []
        self.predictions: list[torch.Tensor] = []
        self.done: list[torch.Tensor] = []

    def _record(self, step: int, module: InputOptimization) -> None:
        self.steps.append(step)
        self.predictions.append(module.predict_classes().cpu())
        if module.freeze_done:
            self.done.append(module.done.cpu().clone())

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.steps, self.predictions, self.done = [], [], []
        self._record(trainer.global_step, _check_module(pl_module, "PredictionTable"))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._record(trainer.global_step, _check_module(pl_module, "PredictionTable"))

    def changed(self) -> torch.Tensor:
        """The fraction of images whose predicted class differs from the start's, per recorded step: ``(S,)``."""
        if not self.predictions:
            return torch.empty(0)
        return torch.stack([(p != self.predictions[0]).float().mean() for p in self.predictions])

    def table(self, names: list[str] | None = None, compact: bool | None = None) -> str:
        """The table as text: compact (see the class), or a row per recorded step and a column per image.

        Args:
            names: class names, indexed by class (default: the class indices).
            compact: as the constructor's ``compact``; ``None``: the constructor's choice.
        """
        def label(c: int) -> str:
            text = names[c] if names is not None else str(c)
            return text[: self.width]

        count = self.predictions[0].numel() if self.predictions else 0
        compact = self.compact if compact is None else compact
        if not (count > self.max_rows if compact is None else compact):
            lines = ["step  " + " ".join(f"image {i}".ljust(self.width) for i in range(count))]
            for step, predicted in zip(self.steps, self.predictions):
                lines.append(f"{step:<5} " + " ".join(label(int(c)).ljust(self.width) for c in predicted))
            return "\n".join(line.rstrip() for line in lines)
        done = [d.float().mean().item() for d in self.done] if self.done else None
        lines = ["step  changed" + ("  done" if done else "")]
        for i, (step, fraction) in enumerate(zip(self.steps, self.changed().tolist())):
            lines.append(f"{step:<5} {fraction:<8.1%}" + (f" {done[i]:.1%}" if done else ""))
        shown = min(count, self.max_rows)
        lines.append(f"first {shown} of {count} images: start -> end (changed at step)")
        rows = []
        for i in range(shown):
            history = [int(p[i]) for p in self.predictions]
            first = next((step for step, c in zip(self.steps, history) if c != history[0]), None)
            rows.append((f"image {i}", f"{label(history[0])} -> {label(history[-1])}",
                         f"({first})" if first is not None else "(unchanged)"))
        widths = [max(len(row[k]) for row in rows) for k in range(2)]
        lines += [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}" for a, b, c in rows]
        return "\n".join(line.rstrip() for line in lines)

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
