"""Side effects of a run: images on disk, per-step prediction tables, the random-sphere check."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities import rank_zero_info
from torchvision.utils import save_image

from inputopt.functional.display import DisplayMode
from inputopt.functional.sphere import sphere_check
from inputopt.loss import NonFiniteError
from inputopt.module import InputOptimization
from inputopt.results import adversarial_grid, image_grid, save_grid, save_images

__all__ = ["CheckpointOnInterrupt", "InputSummary", "LogImages", "PredictionTable", "QualityMetrics", "RunLock",
           "RunLockedError", "SaveAttackResults", "SaveImages", "SphereCheck", "StepProgressBar"]


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

    A folder it cannot write into is refused at setup, before the first step. A resume with no step left
    (a checkpoint at or past ``max_steps``) says so and writes the checkpoint's images. A run stopped by an
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

    def directory(self, trainer: Trainer) -> Path:
        return Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # find an unwritable results folder before the first step, not after the last (creating nothing yet)
        self._wrote = False
        out = self.directory(trainer)
        existing = next(p for p in (out, *out.parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(f"SaveImages cannot write its results into {out}: {existing} is "
                                  f"{'not a folder' if not existing.is_dir() else 'not writable'}")

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


class CheckpointOnInterrupt(Callback):
    """Keep ``last.ckpt`` the latest state of a run when it stops: on an exception, Ctrl-C or SIGTERM, and at
    its end.

    By default it writes ``last.ckpt`` in the ``ModelCheckpoint``'s directory (else
    ``<log_dir>/checkpoints``), the file ``--ckpt_path last`` resumes from: the state at the moment of the
    interruption replaces the last periodic one. At the end of a run it writes the final state there too
    when a ``ModelCheckpoint(save_last=True)`` keeps one (that one keeps its last *periodic* state: after
    120 steps saved every 50, step 100). It saves only after at least one step of *this* fit: a failure
    before the first step (a bad unit, a refused precision, a bad ``--ckpt_path``, a mismatched resume)
    leaves an existing ``last.ckpt`` as it was. A non-finite stop saves the last finite state, or nothing
    when the optimizer's state itself went non-finite. (Lightning's ``OnExceptionCheckpoint`` would also
    make every later ``fit`` in that directory resume silently, even with another objective; this does not.)

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
        self._first_step: int | None = None

    def path(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / f"{self.filename}.ckpt"
        checkpoint = trainer.checkpoint_callback
        directory = getattr(checkpoint, "dirpath", None) or os.path.join(trainer.log_dir or trainer.default_root_dir,
                                                                          "checkpoints")
        return Path(directory) / f"{self.filename}.ckpt"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._first_step = None  # the step this fit starts from, once it is known

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_step = trainer.global_step  # after a resume's checkpoint is restored

    def _stepped(self, trainer: Trainer) -> bool:
        return self._first_step is not None and trainer.global_step > self._first_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        if (self._stepped(trainer) and isinstance(checkpoint, ModelCheckpoint) and checkpoint.save_last
                and checkpoint.dirpath):
            last = Path(checkpoint.dirpath) / f"{checkpoint.CHECKPOINT_NAME_LAST}{checkpoint.FILE_EXTENSION}"
            trainer.save_checkpoint(last, weights_only=False)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not self._stepped(trainer):
            rank_zero_info(f"inputopt: the run stopped before its first step ({type(exception).__name__}); "
                           f"no checkpoint written")
            return
        path = self.path(trainer)
        try:
            trainer.save_checkpoint(path, weights_only=False)
        except NonFiniteError as error:
            rank_zero_info(f"inputopt: run stopped at step {trainer.global_step}; {error}, so {path} is not "
                           f"overwritten")
            return
        self.saved = path
        rank_zero_info(f"inputopt: run interrupted at step {trainer.global_step} ({type(exception).__name__}); "
                       f"saved {self.saved}, resume with --ckpt_path last")


class RunLockedError(RuntimeError):
    """Another live process holds the run folder."""


class RunLock:
    """One run folder, one run: hold ``<folder>/run.lock`` (created exclusively, holding the pid) while a run
    writes there. ``inputopt fit`` holds its log folder this way for the whole fit.

    A second run into a held folder fails at once, before writing anything there. A lock left by a process
    that no longer exists (a run killed with SIGKILL) is taken over with a warning. The lock is removed
    when the ``with`` block ends, whether the run succeeded or not.

    Args:
        folder: the run folder (created if missing).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):
        ...     with RunLock(folder):
        ...         pass
        Traceback (most recent call last):
        ...
        inputopt.callbacks.RunLockedError: ...
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / "run.lock"

    def _take(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(handle, "w") as file:
            file.write(f"{os.getpid()}\n")
        return True

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._take():
            return self
        text = self.path.read_text().strip() if self.path.exists() else ""
        pid = int(text) if text.isdigit() else None
        if pid is not None and _alive(pid):
            raise RunLockedError(
                f"another run (pid {pid}) is writing into {self.path.parent} ({self.path} exists); wait for it, "
                f"or run into another folder (e.g. another --trainer.logger.init_args.version)")
        warnings.warn(f"taking over the stale lock {self.path} of process {text or '?'}, which no longer runs",
                      stacklevel=2)
        self.path.unlink(missing_ok=True)
        if not self._take():  # another process took it over in the meantime
            raise RunLockedError(f"another run is writing into {self.path.parent} ({self.path} exists)")
        return self

    def __exit__(self, *exc_info) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


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
        from inputopt.networks import class_names

        name = getattr(pl_module.attack, "network_name", None)
        names = class_names(name) if name else None
        table = format_example_predictions(examples, [r["eps"] for r in rows], names) if examples and names else ""
        rank_zero_info(format_results(rows) + table + f"\nResults in {out}")


def format_example_predictions(examples: dict, eps: list, names: list[str]) -> str:
    """The kept examples' labels and predicted classes, clean and after the attack at each ε, by class name.

    Example:
        >>> examples = {"labels": torch.tensor([0]), "clean_predictions": torch.tensor([0]),
        ...             "predictions": torch.tensor([[1, 1]])}
        >>> print(format_example_predictions(examples, [0.1, 0.2], ["cat", "dog"]))
        <BLANKLINE>
        Examples: label | clean prediction | prediction at eps 0.1, 0.2
          0: cat | cat | dog, dog
    """
    header = f"\nExamples: label | clean prediction | prediction at eps {', '.join(_cell(e) for e in eps)}"
    lines = [f"  {i}: {names[label]} | {names[clean]} | {', '.join(names[p] for p in adversarial)}"
             for i, (label, clean, adversarial) in enumerate(zip(examples["labels"].tolist(),
                                                                  examples["clean_predictions"].tolist(),
                                                                  examples["predictions"].tolist()))]
    return "\n".join([header, *lines])


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


class QualityMetrics(Callback):
    """At the end of a run, score the images with the quality metrics of :mod:`inputopt.metrics`: write
    them to ``metrics.json`` (beside :class:`SaveImages`'s files) and log them to the trainer's loggers
    (``quality/<name>``, at the last step), and keep them in :attr:`values`.

    - ``high_frequency_energy``: always (:class:`~inputopt.metrics.HighFrequencyEnergy`, mean over images).
    - ``transfer_accuracy/<network>``: with ``transfer_networks``, the fraction of images that each of those
      networks classifies as the image's unit: for class visualizations (an objective with units on the
      network's output, e.g. ``UnitActivation(layer=None, unit=[0, ..., 9])``).
    - ``activation_ratio``: with ``examples`` (the ``examples.json`` of ``inputopt examples`` for the
      objective's layer), each image's score on its unit over that unit's best natural image
      (:class:`~inputopt.metrics.ActivationRatio`; a channel's score is its maximum over positions).
    - ``diversity``: with ``diversity_layer``, the mean pairwise cosine distance of the images in that layer
      of the run's network (:class:`~inputopt.metrics.Diversity`; needs two images or more).

    Images are scored as the run's network sees them (its ``mean``/``std`` normalization; no transforms).
    The settings are checked when the run starts, so a bad one fails before the first step.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        transfer_networks: names of independent networks (zoo, torchvision, dotted path).
        examples: path of an ``examples.json`` written by ``inputopt examples``.
        diversity_layer: dotted layer name of the run's network (``""``: the output).
        high_frequency_cutoff: cutoff of the high-frequency energy, in cycles per pixel.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=100, callbacks=[SaveImages("results/digits"),
        ...     QualityMetrics("results/digits", transfer_networks=["digits_b"], diversity_layer="features.4")])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, transfer_networks: list[str] | None = None,
                 examples: str | os.PathLike | None = None, diversity_layer: str | None = None,
                 high_frequency_cutoff: float = 0.25) -> None:
        from inputopt.metrics import high_frequency_energy

        high_frequency_energy(torch.zeros(1, 1, 1, 1), high_frequency_cutoff)  # checks the cutoff now
        if isinstance(transfer_networks, str):
            transfer_networks = [transfer_networks]
        self.dirpath = dirpath
        self.transfer_networks = list(transfer_networks or [])
        self.examples = examples
        self.diversity_layer = diversity_layer
        self.high_frequency_cutoff = high_frequency_cutoff
        self.values: dict[str, float] = {}
        self.path: Path | None = None

    def _units(self, module: InputOptimization, what: str, layer: str | None = None) -> torch.Tensor:
        """The rows' units, checking that the objective has units (on ``layer``, when given)."""
        from inputopt.objectives.base import UnitsObjective

        objective = module.objective
        if not isinstance(objective, UnitsObjective):
            raise ValueError(f"QualityMetrics: {what} needs an objective with units (UnitActivation, ChannelSum, ...), "
                             f"got {type(objective).__name__}")
        if layer is not None and objective.layer != layer:
            raise ValueError(f"QualityMetrics: {what} is for layer {layer!r}, but the objective is on layer "
                             f"{objective.layer!r}")
        return torch.tensor(module.row_keys)

    def _dataset_max(self) -> tuple[str, dict[int, float]]:
        if not os.path.isfile(self.examples):
            raise FileNotFoundError(f"QualityMetrics: no examples file {str(self.examples)!r} (write one with "
                                    f"`inputopt examples`)")
        record = json.loads(Path(self.examples).read_text())
        return record["layer"] or "", {int(u): row[0] for u, row in zip(record["units"], record["values"])}

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "QualityMetrics")
        if self.transfer_networks:
            self._units(module, "transfer accuracy", "")
        if self.examples is not None:
            layer, maxima = self._dataset_max()
            units = sorted(set(self._units(module, "activation ratio", layer).tolist()))
            missing = [u for u in units if u not in maxima]
            if missing:
                raise ValueError(f"QualityMetrics: {self.examples} has no dataset maximum for units {missing}")
            bad = {u: maxima[u] for u in units if not maxima[u] > 0}
            if bad:
                raise ValueError(f"QualityMetrics: the activation ratio divides by the dataset maxima, which must be "
                                 f"> 0; {self.examples} has {bad}")
        if self.diversity_layer is not None:
            from inputopt.capture import resolve_layer

            resolve_layer(module.network, self.diversity_layer)

    def compute(self, module: InputOptimization) -> dict[str, float]:
        """Score the module's current images; returns and stores :attr:`values`."""
        from inputopt.metrics import ActivationRatio, Diversity, HighFrequencyEnergy, TransferAccuracy

        images = module.images()
        norm = module.normalize
        scaling = dict(mean=norm.mean.flatten().tolist(), std=norm.std.flatten().tolist()) if norm is not None else {}
        values: dict[str, float] = {}
        metric = HighFrequencyEnergy(self.high_frequency_cutoff).to(images.device)
        metric.update(images)
        values["high_frequency_energy"] = metric.compute().item()
        if self.transfer_networks:
            metric = TransferAccuracy(self.transfer_networks, **scaling).to(images.device)
            metric.update(images, self._units(module, "transfer accuracy", "").to(images.device))
            for name, value in zip(self.transfer_networks, metric.compute().view(-1).tolist()):
                values[f"transfer_accuracy/{name}"] = value
        if self.examples is not None:
            layer, maxima = self._dataset_max()
            units = self._units(module, "activation ratio", layer)
            metric = ActivationRatio(module.network, layer, {u: maxima[u] for u in set(units.tolist())}, **scaling)
            metric.update(images, units)
            values["activation_ratio"] = metric.compute().item()
        if self.diversity_layer is not None and images.shape[0] > 1:
            metric = Diversity(module.network, self.diversity_layer, **scaling)
            metric.update(images)
            values["diversity"] = metric.compute().item()
        self.values = values
        return values

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "QualityMetrics")
        out = Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)  # log_dir: a collective under DDP
        if not trainer.is_global_zero:
            return
        values = self.compute(module)
        for logger in trainer.loggers:
            logger.log_metrics({f"quality/{name}": value for name, value in values.items()}, step=trainer.global_step)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "metrics.json"
        record = {**values, "high_frequency_cutoff": self.high_frequency_cutoff, "images": module.image_names()}
        self.path.write_text(json.dumps(record, indent=2) + "\n")
        rank_zero_info("Quality metrics:\n" + "\n".join(f"  {name}: {value:.4g}" for name, value in values.items()))


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


class StepProgressBar(TQDMProgressBar):
    """Lightning's progress bar counting optimization steps: ``steps: 15%|█▌   | 37/250 [00:04<00:22,
    8.50it/s, loss=-3.1, objective=3.2]``, in place of "Epoch 0" (a fit of :class:`InputOptimization` is one
    long epoch) and without the logger's version number (``v_num``).

    :class:`InputOptimization` puts it in place of the Trainer's ``TQDMProgressBar`` (when the bar is on, with
    the same ``refresh_rate`` and ``process_position``). A resumed fit starts the bar at the
    checkpoint's step.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=250, callbacks=[StepProgressBar(refresh_rate=10)])
    """

    def init_train_tqdm(self) -> Tqdm:
        # Lightning's bar, made with its total and its start (a resume's step) so that it never shows "0/?"
        trainer = self.trainer
        return Tqdm(desc="steps", total=trainer.max_steps, initial=trainer.global_step,
                    position=2 * self.process_position, disable=self.is_disabled, leave=True, dynamic_ncols=True,
                    file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT)

    def on_train_epoch_start(self, trainer: Trainer, *args) -> None:
        pass  # one bar for the whole fit, made when it starts: the steps, not the epochs, are what count

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        step = trainer.global_step  # the batch index restarts at 0 in a resumed fit
        if bar is not None and not bar.disable and self._should_update(step, bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
