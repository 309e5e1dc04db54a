"""Dataset runners: many input optimizations, one per batch of a data set, inside Lightning's test loop.

Each test batch is optimized in an inner loop (:func:`~inputopt.engine.optimize`, with gradients enabled
inside the evaluation step), under the trainer's device and precision. Several devices split the *data*
with a distributed sampler that never repeats a sample, so metrics and results equal a one-process run.
:class:`DatasetRunner` is the base; :mod:`inputopt.runners.attack`, :mod:`inputopt.runners.sweep` and
:mod:`inputopt.runners.examples` build on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, default_collate, get_worker_info

from inputopt._notices import quiet_data_loaders
from inputopt.data import UnreadableImageError
from inputopt.networks import FrozenNetworkHolder
from inputopt.record import StepCallback

__all__ = ["DatasetRunner", "IndexedDataset", "IndexedIterable", "check_data_images", "check_not_empty",
           "inner_optimization", "skip_unreadable_collate", "stream"]


def _indexed(index: int, sample: Any) -> tuple:
    return (index, *sample) if isinstance(sample, (tuple, list)) else (index, sample)


class IndexedDataset(Dataset):
    """``(index, *sample)`` for every sample of ``dataset``: the index seeds the sample's randomness.

    With ``skip_unreadable``, a sample whose image cannot be decoded (:class:`~inputopt.data.UnreadableImageError`)
    is ``None``, which :func:`skip_unreadable_collate` leaves out and counts.

    Example:
        >>> IndexedDataset([("a", 0), ("b", 1)])[1]
        (1, 'b', 1)
    """

    def __init__(self, dataset: Any, skip_unreadable: bool = False) -> None:
        self.dataset = dataset
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple | None:
        try:
            return _indexed(index, self.dataset[index])
        except UnreadableImageError:
            if not self.skip_unreadable:
                raise
            return None


class IndexedIterable(IterableDataset):
    """``(index, *sample)`` for the samples of an iterable data set (``index``: the sample's rank in the stream),
    each sample on one process and one loader worker: process ``rank`` of ``world_size`` takes every
    ``world_size``-th sample, and its loader workers take turns by ``batch_size`` samples, so that the loader's
    ``i``-th batch holds the share's samples ``[i·batch_size, (i+1)·batch_size)`` whatever the number of
    workers. ``start`` skips the first samples of this process's share (a resumed pass), without yielding them.

    A streamed data set may yield zero-argument callables that decode a sample (as
    :class:`~inputopt.data.WebDataset` does): each process and worker then decodes only its own samples.

    Example:
        >>> class Letters(IterableDataset):
        ...     def __iter__(self):
        ...         return iter("abcde")
        >>> list(IndexedIterable(Letters(), rank=1, world_size=2))
        [(1, 'b'), (3, 'd')]
    """

    def __init__(self, dataset: Any, rank: int = 0, world_size: int = 1, start: int = 0,
                 skip_unreadable: bool = False, batch_size: int = 1) -> None:
        self.dataset, self.rank, self.world_size, self.start = dataset, rank, world_size, start
        self.skip_unreadable, self.batch_size = skip_unreadable, batch_size

    def __iter__(self) -> Iterator[tuple | None]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)

        def wanted(index: int) -> bool:
            position = index // self.world_size - self.start  # in this process's share, after the resumed start
            return (index % self.world_size == self.rank and position >= 0
                    and (position // self.batch_size) % workers == worker_id)

        for index, sample in stream(self.dataset, self.skip_unreadable, wanted):
            yield None if sample is None else _indexed(index, sample)


def stream(dataset: Any, skip_unreadable: bool = False, wanted: Callable[[int], bool] | None = None
           ) -> Iterator[tuple[int, Any]]:
    """``(index, sample)`` for the samples of an iterable data set that ``wanted(index)`` selects (default: all),
    numbered in the order the data set yields them. A sample yielded as a zero-argument callable is decoded here,
    only when wanted. With ``skip_unreadable``, a sample that raises :class:`~inputopt.data.UnreadableImageError`
    is ``None`` (the stream goes on where the data set's iterator can).

    Example:
        >>> list(stream(["a", lambda: "b", "c"], wanted=lambda i: i > 0))
        [(1, 'b'), (2, 'c')]
    """
    iterator = iter(dataset)
    index = -1
    while True:
        index += 1
        try:
            sample = next(iterator)
        except StopIteration:
            return
        except UnreadableImageError:
            if not skip_unreadable:
                raise
            sample = None
        if wanted is not None and not wanted(index):
            continue
        if callable(sample) and not isinstance(sample, (Tensor, tuple, list)):
            try:
                sample = sample()
            except UnreadableImageError:
                if not skip_unreadable:
                    raise
                sample = None
        yield index, sample


def skip_unreadable_collate(samples: list) -> tuple[list | None, int]:
    """``default_collate`` of the readable samples, and the number of unreadable ones (``None``) left out.

    Example:
        >>> batch, skipped = skip_unreadable_collate([(0, torch.zeros(2)), None, (2, torch.ones(2))])
        >>> batch[0], skipped
        (tensor([0, 2]), 1)
    """
    kept = [s for s in samples if s is not None]
    return (default_collate(kept) if kept else None), len(samples) - len(kept)


class _Shard(DistributedSampler):
    """Process ``rank``'s share of ``range(length)`` (every ``world_size``-th index, as Lightning's unrepeated
    distributed sampler gives), less its first ``start`` indices. A ``DistributedSampler``, so that Lightning
    does not put its own in its place."""

    def __init__(self, length: int, rank: int, world_size: int, start: int = 0) -> None:  # noqa: D107
        self.indices = list(range(rank, length, world_size))[start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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
        dataset: the samples: a map-style data set (``__len__`` and ``__getitem__``) or an
            ``IterableDataset`` (streamed; its samples are numbered in the order it yields them).
        batch_size: samples per batch.
        num_workers: data-loading worker processes.
    """

    def __init__(self, network: nn.Module, dataset: Any, batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
        streamed = isinstance(dataset, IterableDataset)
        if not streamed and (not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must be a map-style data set (with __len__ and __getitem__) or a "
                            f"torch.utils.data.IterableDataset, got {type(dataset).__name__}")
        object.__setattr__(self, "_network", network)  # outside the module tree: not saved or mode-switched
        self.dataset = dataset
        self.streamed = streamed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.skip_unreadable = False  # a subclass that can skip undecodable images sets it
        self.skip_batches = 0  # a resumed pass: batches of this process's share already done

    @staticmethod
    def _image_of(sample: Any) -> Tensor:
        image = sample[0] if isinstance(sample, (tuple, list)) else sample
        if not isinstance(image, Tensor) or image.ndim != 3:
            raise ValueError(f"samples must start with a (C, H, W) image tensor, got {type(image).__name__} "
                             f"{tuple(getattr(image, 'shape', ()))}")
        return image

    def first_image(self) -> Tensor:
        """The image of the data set's first readable sample (of its stream, for an ``IterableDataset``).

        Example:
            >>> DatasetRunner(nn.Identity(), [(torch.zeros(1, 4, 4), 3)]).first_image().shape
            torch.Size([1, 4, 4])
        """
        if not self.streamed:
            for index in range(len(self.dataset)):
                try:
                    return self.dataset_image(index)
                except UnreadableImageError:
                    continue
            raise ValueError("the data set is empty (or none of its images can be read)")
        for _, sample in stream(self.dataset, True):
            if sample is not None:
                return self._image_of(sample)
        raise ValueError("the data set is empty (or none of its images can be read)")

    def dataset_image(self, index: int) -> Tensor:
        """The image of sample ``index`` of :attr:`dataset` (a sample is ``(image, ...)`` or an image), checked to
        be a ``(C, H, W)`` tensor.

        Example:
            >>> DatasetRunner(nn.Identity(), [(torch.zeros(1, 4, 4), 3)]).dataset_image(0).shape
            torch.Size([1, 4, 4])
        """
        if self.streamed:
            raise TypeError("a streamed (iterable) data set has no random access: read its samples by iterating")
        return self._image_of(self.dataset[index])

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
        trainer = self._trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        start = self.skip_batches * self.batch_size
        collate = skip_unreadable_collate if self.skip_unreadable else None
        if self.streamed:  # each sample on one process, in the order of the stream
            data = IndexedIterable(self.dataset, rank, world, start, self.skip_unreadable, self.batch_size)
            return DataLoader(data, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate)
        data = IndexedDataset(self.dataset, self.skip_unreadable)
        if world > 1 and len(data) < world:  # every process needs a sample
            raise ValueError(f"{len(data)} samples for {world} processes: every process needs at least "
                             f"one sample; use at most {len(data)} devices")
        # each sample exactly once, on one process (Lightning's unrepeated distributed sampler, less a resumed start)
        sampler = _Shard(len(data), rank, world, start)
        return DataLoader(data, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=collate)


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
