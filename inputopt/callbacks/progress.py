"""What a fit prints: its summary and its progress bar, counting optimization steps.

This module knows no runner: :class:`~inputopt.module.InputOptimization` puts these callbacks in place of
Lightning's own."""

from __future__ import annotations

import sys

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["ImagesPerSecond", "InputSummary", "StepProgressBar"]


class InputSummary(ModelSummary):
    """The summary printed when a fit starts, which calls the input what it is: Lightning's table would call
    the optimized pixels "Trainable params".

    :class:`~inputopt.module.InputOptimization` puts it in place of the Trainer's ``ModelSummary`` (when the
    summary is on) and gives its lines (:meth:`~inputopt.module.InputOptimization.summary`). For a module
    without a ``summary()`` it prints Lightning's table.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[InputSummary(max_depth=1)], enable_model_summary=True)
    """

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        summary = getattr(pl_module, "summary", None)
        if not callable(summary):
            super().on_fit_start(trainer, pl_module)
        elif self._max_depth:
            rank_zero_info(summary())


class StepProgressBar(TQDMProgressBar):
    """Lightning's progress bar counting optimization steps: ``steps: 15%|█▌   | 37/250 [00:04<00:22,
    8.50it/s, loss=-3.1, objective=3.2]``, in place of "Epoch 0" (a fit of :class:`~inputopt.module.InputOptimization` is one
    long epoch) and without the logger's version number (``v_num``).

    :class:`~inputopt.module.InputOptimization` puts it in place of the Trainer's ``TQDMProgressBar`` (when the bar is on, with
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


class ImagesPerSecond(Callback):
    """Shows a pass over a data set's throughput, ``images/s`` (the module's ``images_per_second``), on Lightning's
    test progress bar (TQDM or Rich; nothing when the bar is off). Lightning's bars count batches, not images,
    and show no metrics while testing.

    :class:`~inputopt.runners.examples.DatasetExamples` adds it itself (``configure_callbacks``).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[ImagesPerSecond()])
    """

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        rate = getattr(pl_module, "images_per_second", None)
        bar = trainer.progress_bar_callback
        if rate is None or bar is None or not trainer.is_global_zero:
            return
        text = f"{rate:.1f} images/s"
        if isinstance(bar, TQDMProgressBar):
            if getattr(bar, "_test_progress_bar", None) is not None:
                bar.test_progress_bar.set_postfix_str(text, refresh=False)
        elif isinstance(bar, RichProgressBar) and bar.progress is not None and bar.test_progress_bar_id is not None:
            bar.progress.update(bar.test_progress_bar_id, description=f"Testing, {text}")
