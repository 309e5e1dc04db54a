"""Dataset runners: many input optimizations, one per batch of a data set, inside Lightning's test loop.

Each test batch is optimized in an inner loop (:func:`~inputopt.engine.optimize`, with gradients enabled
inside the evaluation step), under the trainer's device and precision. Several devices split the *data*
with a distributed sampler that never repeats a sample, so metrics and results equal a one-process run.
:class:`DatasetRunner` is the base; :mod:`inputopt.runners.attack`, :mod:`inputopt.runners.sweep` and
:mod:`inputopt.runners.examples` build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from inputopt._notices import quiet_data_loaders
from inputopt.networks import FrozenNetworkHolder
from inputopt.record import StepCallback

__all__ = ["DatasetRunner", "IndexedDataset", "check_data_images", "check_not_empty", "inner_optimization"]


class IndexedDataset(Dataset):
    """``(index, *sample)`` for every sample of ``dataset``: the index seeds the sample's randomness.

    Example:
        >>> IndexedDataset([("a", 0), ("b", 1)])[1]
        (1, 'b', 1)
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        sample = self.dataset[index]
        return (index, *sample) if isinstance(sample, (tuple, list)) else (index, sample)


def check_data_images(indices: Tensor | Sequence[int], images: Tensor) -> None:
    """Refuse a batch of data images with a non-finite pixel (NaN or Inf), naming the samples' data-set indices:
    one NaN pixel would otherwise make its image the top example of every unit, or an attack's success. The
    runners call it on every batch.

    Example:
        >>> images = torch.zeros(3, 1, 2, 2)
        >>> images[1, 0, 0, 0] = float("nan")
        >>> check_data_images(torch.tensor([7, 8, 9]), images)
        Traceback (most recent call last):
        ...
        ValueError: the data set has non-finite pixels (NaN or Inf) in the image at index 8; ...
    """
    if not images.is_floating_point():
        return
    bad = ~torch.isfinite(images.detach()).flatten(1).all(1)
    if bad.any():
        where = torch.as_tensor(indices)[bad.cpu()].tolist() if len(indices) == len(images) else bad.nonzero()
        where = [int(i) for i in where]
        shown = ", ".join(map(str, where[:10])) + (f" and {len(where) - 10} more" if len(where) > 10 else "")
        raise ValueError(f"the data set has non-finite pixels (NaN or Inf) in the image{'s' if len(where) > 1 else ''} "
                         f"at index {shown}; fix or leave out those samples")


def check_not_empty(dataset: Any, what: str = "the data set") -> None:
    """Refuse an empty data set (one with a length of 0): a run over it would end with no results and no error.

    Example:
        >>> check_not_empty([])
        Traceback (most recent call last):
        ...
        ValueError: the data set is empty: give at least one sample (check its path, split and limit)
    """
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise ValueError(f"{what} is empty: give at least one sample (check its path, split and limit)")


@contextlib.contextmanager
def inner_optimization() -> Iterator[None]:
    """Gradients on inside an evaluation step (Lightning runs those under ``inference_mode``/``no_grad``).

    Clone the batch's tensors inside this context: tensors made under inference mode cannot be saved
    for backward.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


class DatasetRunner(FrozenNetworkHolder, LightningModule):
    """Base of the runners: a frozen network outside the module tree, and the data of the test loop.

    A subclass implements ``test_step`` (each batch starts with the samples' data-set indices) and its
    metrics. ``trainer.test(runner)`` runs it over :attr:`dataset`, on any number of devices.

    Args:
        network: the frozen network (kept in eval mode, moved with the runner, never checkpointed).
        dataset: the samples (anything with ``__len__`` and ``__getitem__``).
        batch_size: samples per batch.
        num_workers: data-loading worker processes.
    """

    def __init__(self, network: nn.Module, dataset: Any, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset must be a map-style data set (with __len__ and __getitem__), got "
                            f"{type(dataset).__name__}")
        object.__setattr__(self, "_network", network)  # outside the module tree: not saved or mode-switched
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_workers = num_workers

    def dataset_image(self, index: int) -> Tensor:
        """The image of sample ``index`` of :attr:`dataset` (a sample is ``(image, ...)`` or an image), checked to
        be a ``(C, H, W)`` tensor.

        Example:
            >>> DatasetRunner(nn.Identity(), [(torch.zeros(1, 4, 4), 3)]).dataset_image(0).shape
            torch.Size([1, 4, 4])
        """
        sample = self.dataset[index]
        image = sample[0] if isinstance(sample, (tuple, list)) else sample
        if not isinstance(image, Tensor) or image.ndim != 3:
            raise ValueError(f"samples must start with a (C, H, W) image tensor, got {type(image).__name__} "
                             f"{tuple(getattr(image, 'shape', ()))}")
        return image

    # The network is outside the module tree, so Lightning's eval() at the start of the test loop never reaches
    # it: every runner freezes it for the run (eval mode, no parameter gradients: BatchNorm statistics and
    # Dropout untouched, whatever the user did to the module since), and gives the user's modes and
    # requires_grad flags back at the end, or when the run fails.
    def on_test_start(self) -> None:
        self._freeze_network()

    def on_test_end(self) -> None:
        self._give_back_network()

    @property
    def stop_callback(self) -> StepCallback:
        """The step callback of the inner loops (``optimize(..., callbacks=[self.stop_callback])``, an attack's
        ``run(..., callbacks=...)``): :meth:`stop_if_asked` after every backward."""
        return _StopIfAsked(self)

    def stop_if_asked(self, *_: Any) -> None:
        """Stop now when the run was asked to stop (SIGTERM: a cluster's time limit), raising Lightning's
        ``SIGTERMException`` as its loops do between batches. The runners call it between the steps of their
        inner loops (:attr:`stop_callback`), so a run stops within a step, not at the end of a batch that may
        take minutes; what is finished (a sweep's saved units) is kept."""
        trainer = self._trainer
        if trainer is not None and getattr(trainer, "received_sigterm", False):
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            raise SIGTERMException

    def configure_callbacks(self) -> list:
        """A callback that gives the network its user's train/eval modes back when a run fails (Lightning calls
        no module hook then)."""
        return [_GiveBackRunnerModes()]

    def test_dataloader(self) -> DataLoader:
        quiet_data_loaders()  # Lightning's wrapper of this loader warns about torch internals
        data = IndexedDataset(self.dataset)
        trainer = self._trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:  # each sample exactly once, on one process
            if len(data) < trainer.world_size:  # Lightning's sampler would fail on an assertion
                raise ValueError(f"{len(data)} samples for {trainer.world_size} processes: every process needs at least "
                                 f"one sample; use at most {len(data)} devices")
            sampler = UnrepeatedDistributedSampler(data, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                                   shuffle=False)
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)


class _GiveBackRunnerModes(Callback):
    """Gives a runner's network (a :class:`~inputopt.networks.FrozenNetworkHolder`'s) its user's train/eval modes
    and ``requires_grad`` flags back when a run fails."""

    def on_exception(self, trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(pl_module, FrozenNetworkHolder):
            pl_module._give_back_network()


class _StopIfAsked(StepCallback):
    """A runner's :meth:`DatasetRunner.stop_if_asked` as a step callback."""

    def __init__(self, runner: DatasetRunner) -> None:
        self.runner = runner

    def on_after_backward(self, record, step, terms) -> None:
        self.runner.stop_if_asked()
