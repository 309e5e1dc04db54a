"""One input for a whole data set, trained by ``Trainer.fit`` over a DataLoader: universal perturbations and
adversarial patches, data-parallel on any number of devices.

:class:`SharedInputOptimization` is a LightningModule whose only trainable parameter is one shared input,
held by an image parameterization (its ε-ball and box projection). Every training batch of data images
gets the shared input (:class:`~inputopt.transforms.insert.Insert`: added, or pasted as a patch), goes
through the loss path of a fit (robustness transforms, normalization, the frozen network, the objective)
and the loss is the batch's mean plus the priors on the shared input. On several devices Lightning's DDP
gives each process its own batches and averages the input's gradient, as it does for a network's
weights: with :class:`SharedBatchSampler` the result equals a one-process run with the same global batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, get_worker_info

from inputopt._config import build
from inputopt.engine import NonFiniteError, StepEngine, check_precision, nonfinite_message
from inputopt.functional.random import RowRandom
from inputopt.loss import LossPath, prior_names
from inputopt.metrics.fooling import FoolingRate
from inputopt.module import TRAINER_FINGERPRINT_FIELDS, _tensor_hash, check_max_steps, trainer_numerics
from inputopt.networks import FrozenNetworkHolder, class_names
from inputopt.objectives.base import InputObjective
from inputopt.objectives.classification import LabelObjective
from inputopt.problem import Problem
from inputopt.runners.base import IndexedDataset, IndexedIterable, check_data_images, check_not_empty, stream
from inputopt.runners.sweep import _optimizer
from inputopt.transforms.insert import Insert

__all__ = ["SHARED_FINGERPRINT_FIELDS", "SharedBatchSampler", "SharedInputOptimization", "SharedStream",
           "insert_draws"]

#: What defines a shared-input run's result: stored in its checkpoints and compared on resume.
SHARED_FINGERPRINT_FIELDS = ("network", "network_weights", "normalization", "objective", "priors", "param",
                             "transforms", "insert", "input_shape", "seed", "global_batch_size", "optimizer",
                             "reference", *TRAINER_FINGERPRINT_FIELDS)


def _problem(problem: Problem | Mapping[str, Any]) -> Problem:
    """The problem, or the one its config (a checkpoint's hyperparameters) describes; a clear error for the config
    of a problem whose network was a module, which data cannot rebuild."""
    try:
        return Problem.of(problem)
    except ValueError as error:
        if isinstance(problem, Mapping) and "was a module" in str(error):
            raise ValueError(f"{error}; loading a checkpoint, pass the problem again: "
                             f"SharedInputOptimization.load_from_checkpoint(path, problem=Problem(module, ...))"
                             ) from None
        raise


def insert_draws(seeds: Sequence[int], step: int, count: int) -> Tensor:
    """``(B, count)`` uniform numbers for an :class:`Insert` (a patch's placement): row ``i`` from
    ``(seeds[i], step)`` only, on a stream of its own (not the robustness transforms' numbers).

    Example:
        >>> torch.equal(insert_draws([5, 6], 3, 4)[1], insert_draws([6], 3, 4)[0])
        True
    """
    rows = [RowRandom(s).stream("insert").uniform([step], (count,), dtype=torch.float64)[0] for s in seeds]
    return torch.stack(rows) if rows else torch.empty(0, count, dtype=torch.float64)


class SharedBatchSampler(DistributedSampler):
    """Global batches that do not depend on the number of processes, each split between the processes.

    Pass ``p`` over the data is a permutation of the samples drawn from ``(seed, p)``; global batch ``k`` of
    a pass is its ``k``-th slice of ``batch_size × num_replicas`` samples, and process ``r`` takes the
    ``r``-th part of it. Over one process and ``batch_size × N`` samples per batch, or ``N`` processes and
    ``batch_size`` each, every step sees the same samples. One iteration is the rest of the current pass,
    from the global step that ``position()`` gives when the iteration starts: a resumed fit goes on with
    the batches it would have seen (the samples after the last whole global batch wait for the next pass).

    Args:
        length: the number of samples.
        batch_size: samples per process and step.
        num_replicas: processes.
        rank: this process.
        seed: the seed of the permutations.
        position: the global step the next iteration starts from (default: 0).

    Example:
        >>> one = list(SharedBatchSampler(10, batch_size=4, num_replicas=1, rank=0))
        >>> two = [list(SharedBatchSampler(10, batch_size=2, num_replicas=2, rank=r)) for r in (0, 1)]
        >>> one[:4] == two[0][:2] + two[1][:2] and len(one) == 8
        True
    """

    def __init__(self, length: int, batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 position: Callable[[], int] | None = None) -> None:
        super().__init__(range(length), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.length, self.batch_size = length, batch_size
        self.global_batch_size = batch_size * num_replicas
        self.steps_per_pass = length // self.global_batch_size
        if self.steps_per_pass < 1:
            raise ValueError(f"the data set has {length} samples, fewer than one global batch ({batch_size} per "
                             f"process x {num_replicas} processes = {self.global_batch_size}); use a smaller batch_size")
        self.position = position or (lambda: 0)

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the pass comes from the global step (see the class docstring)."""

    def permutation(self, index: int) -> Tensor:
        """The order of the samples in pass ``index``."""
        return torch.randperm(self.length, generator=RowRandom(self.seed).stream("shared.order").generator(index))

    def __iter__(self):
        start = int(self.position())
        index, first = divmod(start, self.steps_per_pass)
        order = self.permutation(index)
        for k in range(first, self.steps_per_pass):
            batch = order[k * self.global_batch_size:(k + 1) * self.global_batch_size]
            yield from batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return self.steps_per_pass * self.batch_size


class SharedStream(IterableDataset):
    """The global batches of a streamed (iterable) data set, as :class:`SharedBatchSampler` makes them of a
    map-style one, in the stream's own order (shuffle at the source: shards, buffers): global batch ``k`` of a
    pass is the stream's samples ``[k·G, (k+1)·G)``, ``G = batch_size × num_replicas``, process ``r`` takes the
    ``r``-th part of it, and the samples after the last whole global batch wait for the next pass. One
    iteration is the rest of the current pass, from the global step ``position()`` gives when it starts (a
    resumed fit goes on with the batches it would have seen). The first iteration counts the stream's
    samples (one pass that decodes nothing when the data set yields decoders, as
    :class:`~inputopt.data.WebDataset` does); then each process decodes only the samples it takes.

    Example:
        >>> class Numbers(IterableDataset):
        ...     def __iter__(self):
        ...         return iter(range(10))
        >>> one = [s[0] for s in SharedStream(Numbers(), batch_size=4)]
        >>> two = [[s[0] for s in SharedStream(Numbers(), batch_size=2, num_replicas=2, rank=r)] for r in (0, 1)]
        >>> one, two[0][:2] + two[1][:2] == one[:4]
        ([0, 1, 2, 3, 4, 5, 6, 7], True)
    """

    def __init__(self, dataset: Any, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 position: Callable[[], int] | None = None) -> None:
        self.dataset, self.batch_size, self.num_replicas, self.rank = dataset, batch_size, num_replicas, rank
        self.global_batch_size = batch_size * num_replicas
        self.position = position or (lambda: 0)
        self.steps_per_pass: int | None = None  # counted at the first iteration

    def _mine(self, index: int, first: int) -> bool:
        step, place = divmod(index, self.global_batch_size)
        if step < first or place // self.batch_size != self.rank:
            return False
        if self.steps_per_pass is not None and step >= self.steps_per_pass:
            return False  # after the last whole global batch
        worker = get_worker_info()
        return worker is None or step % worker.num_workers == worker.id

    def __iter__(self):
        if self.steps_per_pass is None:
            self.steps_per_pass = self._count_steps()
        first = int(self.position()) % self.steps_per_pass
        for index, sample in stream(self.dataset, False, lambda i: self._mine(i, first)):
            yield (index, *sample) if isinstance(sample, (tuple, list)) else (index, sample)

    def _count_steps(self) -> int:
        count = sum(1 for _ in iter(self.dataset))
        steps = count // self.global_batch_size
        if steps < 1:
            raise ValueError(f"the data set has {count} samples, fewer than one global batch ({self.batch_size} per "
                             f"process x {self.num_replicas} processes = {self.global_batch_size}); use a smaller "
                             f"batch_size")
        return steps


class SharedInputOptimization(FrozenNetworkHolder, LightningModule):
    """Optimize one input for a whole data set: ``loss = mean_i[−f(T(insert(s, x_i)))] + Σ_p w_p·h_p(s)``.

    The shared input ``s = param()`` (one row: a perturbation, a patch) is the module's only trainable
    parameter, projected after every step (the parameterization's ε-ball and box). ``insert`` puts it into
    every data image (:class:`~inputopt.transforms.insert.AddPerturbation`: ``clamp(x + δ)``, a universal
    perturbation; :class:`~inputopt.transforms.insert.PastePatch`: a patch at a random place, scale and
    rotation per image, drawn from ``(seed, sample index, step)``). The objective scores the network's
    response to the images after the robustness ``transforms`` (the loss path of
    :class:`~inputopt.InputOptimization`); the priors penalize the shared input itself.

    The objective's targets are data: for an untargeted :class:`~inputopt.objectives.LabelObjective`, the
    network's prediction on each clean image (``reference="prediction"``) or the data set's label
    (``reference="label"``); for a targeted one, its target class. ``Trainer.fit`` runs it over
    ``dataset``; ``val_dataset`` (the held-out split) gives :class:`~inputopt.metrics.FoolingRate` each
    validation (``Trainer(val_check_interval=N, check_val_every_n_epoch=None)``): the fraction of held-out
    images whose prediction changes (untargeted) or becomes the target (targeted; images the network
    already gives the target are left out), logged as ``val/fooling_rate`` and kept in :attr:`history`.

    Several devices (``Trainer(devices=N, strategy="ddp")``): each process takes ``batch_size`` samples of
    every global batch (:class:`SharedBatchSampler`) and DDP averages the input's gradient, so N processes
    with ``batch_size`` give the input of one process with ``N × batch_size``. Precision, checkpoints,
    resume (the same batches follow), TensorBoard and progress bars come from the Trainer, as for a fit.

    Args:
        problem: the network, the objective (what to maximize on each image, e.g. ``Margin()``, untargeted, or
            ``NegativeCrossEntropy(target=859)``), the priors (penalties on the shared input), the shared
            input's parameterization (default: the insert's, e.g. a patch in [0, 1]; a universal perturbation
            needs one with an ε-ball around zero, ``PixelImage(std=0, eps=0.2)``), the robustness transforms of
            the loss forward (expectation over transformation) and the seed (the batches' order, the patch
            placements and the starting input): a :class:`~inputopt.problem.Problem`, or its plain-data config
            (the checkpoint's hyperparameters; a problem whose network is a module is given again,
            ``load_from_checkpoint(path, problem=Problem(module, ...))``).
        insert: how the shared input enters the images.
        dataset: the training images, ``(image, label)`` samples in the network's pixel space: a map-style
            data set (shuffled by :class:`SharedBatchSampler`) or an ``IterableDataset`` (streamed in its own
            order, :class:`SharedStream`).
        val_dataset: the held-out images for the fooling rate (``None``: no validation), map-style or streamed.
        optimizer: builds the optimizer from the parameters (a ``functools.partial`` or a ``{"class_path",
            "init_args"}`` config); default Adam, lr 0.01.
        batch_size: training samples per process and step.
        val_batch_size: held-out samples per batch (default ``batch_size``).
        num_workers: data-loading worker processes.
        reference: what an untargeted objective moves away from: ``"prediction"`` or ``"label"``.
        allow_resume_mismatch: fingerprint fields that may differ from the checkpoint a fit resumes from.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> from inputopt.objectives import Margin
        >>> from inputopt.params import PixelImage
        >>> from inputopt.transforms.insert import AddPerturbation
        >>> problem = Problem("digits", Margin(), param=PixelImage(std=0, eps=0.1))
        >>> module = SharedInputOptimization(problem, AddPerturbation(), Digits("train", limit=64), batch_size=32)
        >>> Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...         enable_model_summary=False).fit(module)
        >>> module.shared().shape, module.shared().abs().max().item() <= 0.1
        (torch.Size([1, 1, 32, 32]), True)
    """

    def __init__(
        self,
        problem: Problem,
        insert: Insert,
        dataset: Dataset,
        val_dataset: Dataset | None = None,
        optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
        batch_size: int = 64,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        reference: str = "prediction",
        allow_resume_mismatch: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self._engine: StepEngine | None = None  # the input's update (optimizer_step)
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if val_batch_size is not None and (isinstance(val_batch_size, bool) or not isinstance(val_batch_size, int)
                                           or val_batch_size < 1):
            raise ValueError(f"val_batch_size must be an int >= 1 or None, got {val_batch_size!r}")
        if reference not in ("prediction", "label"):
            raise ValueError(f"reference must be 'prediction' or 'label', got {reference!r}")
        for name, data in (("dataset", dataset), ("val_dataset", val_dataset)):
            if data is not None and not isinstance(data, IterableDataset) and (
                    not hasattr(data, "__len__") or not hasattr(data, "__getitem__")):
                raise TypeError(f"{name} must be a map-style data set (with __len__ and __getitem__) or a "
                                f"torch.utils.data.IterableDataset, got {type(data).__name__}")
        first = next((sample for _, sample in stream(dataset)), None) if isinstance(dataset, IterableDataset) else (
            dataset[0] if len(dataset) else None)
        if first is None:
            raise ValueError("dataset is empty")
        problem = _problem(problem)
        objective = problem.require(InputObjective, "a shared-input run", "Margin()")
        if objective.couples_rows:
            raise ValueError(f"{type(objective).__name__} couples the rows of a batch, which the processes of a "
                             f"shared-input run split: use an objective that scores each image alone")
        insert = build(insert)
        if not isinstance(insert, Insert):
            raise TypeError(f"insert must be an inputopt.transforms.insert.Insert (AddPerturbation, PastePatch), "
                            f"got {insert!r}")
        param = problem.new_param(insert.default_param() if problem.param is None else None)
        insert.check_param(param)
        ignore = ["problem", *(n for n, v in (("dataset", dataset), ("val_dataset", val_dataset))
                               if not isinstance(v, (str, type(None))))]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters(ignore=ignore)
        self.hparams["problem"] = problem.config()  # plain data in checkpoints
        self.hparams["insert"] = insert.config()
        self.optimizer_factory, self.hparams["optimizer"] = _optimizer(
            optimizer if optimizer is not None else partial(torch.optim.Adam, lr=0.01))  # plain data in checkpoints
        self.save_hyperparameters(dict(self.hparams))  # the logged hyperparameters: the same plain data
        self._param_record = param.config()  # the effective parameterization (the insert's default), fingerprinted

        object.__setattr__(self, "_network", problem.network)  # outside the module tree: not trained, saved or synced
        self.problem = problem
        self.network_name = problem.network_name
        self.normalize = problem.normalize
        self.objective, self.insert, self.transforms = objective, insert, problem.transforms
        self.priors = nn.ModuleList(problem.priors)
        self.prior_names = prior_names(problem.priors)
        # the priors score the shared input, not the images: the loss path holds none
        self.path = LossPath(problem.network, objective, (), problem.transforms, self.normalize)
        self.dataset, self.val_dataset = dataset, val_dataset
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_batch_size = val_batch_size or batch_size
        self.reference, self.seed = reference, problem.seed
        unknown = sorted(set(allow_resume_mismatch) - set(SHARED_FINGERPRINT_FIELDS))
        if isinstance(allow_resume_mismatch, str) or unknown:
            raise ValueError(f"allow_resume_mismatch must be a list of fingerprint fields "
                             f"{list(SHARED_FINGERPRINT_FIELDS)}, got {allow_resume_mismatch!r}")
        self.allow_resume_mismatch = list(allow_resume_mismatch)

        image = first[0] if isinstance(first, (tuple, list)) else first
        self.image_shape = tuple(image.shape)
        self.input_shape = insert.input_shape(self.image_shape)
        self.param = param.initialize(self.input_shape, keys=[0], seed=self.seed)
        self.targeted = isinstance(objective, LabelObjective) and objective.targeted
        self.fooling_rate = FoolingRate(targeted=self.targeted)
        #: ``(global step, held-out fooling rate)`` of every validation of this module.
        self.history: list[tuple[int, float]] = []
        self._weights_hash: str | None = None
        with torch.no_grad():  # bad images, layers or classes fail here, before any run
            sample = self.insert(self.param(), image.float()[None], insert_draws([0], 0, insert.num_random))
            if self._targets(sample, torch.zeros(1, dtype=torch.long), None) is None:
                self.path.default_targets(sample)  # the objective's own classes, against the network's
            self.transforms.check(self.image_shape)

    @property
    def class_names(self) -> list[str] | None:
        """The network's class names, when known."""
        return class_names(self.network_name) if self.network_name else None

    def shared(self) -> Tensor:
        """The shared input ``(1, *input_shape)`` (a detached copy): the perturbation or the patch."""
        return self.param().detach().clone()

    # -- data ----------------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        trainer = self._trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def train_dataloader(self) -> DataLoader:
        check_not_empty(self.dataset)
        world, rank = self._world()
        if isinstance(self.dataset, IterableDataset):  # streamed: global batches in the stream's order
            data = SharedStream(self.dataset, self.batch_size, world, rank, position=lambda: self.trainer.global_step)
            return DataLoader(data, batch_size=self.batch_size, num_workers=self.num_workers)
        sampler = SharedBatchSampler(len(self.dataset), self.batch_size, world, rank, self.seed,
                                     position=lambda: self.trainer.global_step)
        return DataLoader(IndexedDataset(self.dataset), batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is None:
            return []
        check_not_empty(self.val_dataset, "the held-out data set (val_dataset)")
        world, rank = self._world()
        if isinstance(self.val_dataset, IterableDataset):  # streamed: each sample on one process
            return DataLoader(IndexedIterable(self.val_dataset, rank, world, batch_size=self.val_batch_size),
                              batch_size=self.val_batch_size,
                              num_workers=self.num_workers)
        data = IndexedDataset(self.val_dataset)
        sampler = UnrepeatedDistributedSampler(data, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
        return DataLoader(data, batch_size=self.val_batch_size, sampler=sampler, num_workers=self.num_workers)

    def _unpack(self, batch: Any) -> tuple[list[int], Tensor, Tensor | None]:
        """``(keys, images, labels)`` of a batch: ``(index, image, label)`` from this module's loaders, or
        ``(image, label)`` / ``image`` from a user's loader (keys: the rows' places in the global batch)."""
        if isinstance(batch, Tensor):
            batch = (batch,)
        if len(batch) == 3:
            keys, images, labels = batch[0].tolist(), batch[1], batch[2]
        else:
            images, labels = batch[0], (batch[1] if len(batch) > 1 else None)
            world, rank = self._world()
            start = (self.global_step * world + rank) * images.shape[0]
            keys = list(range(start, start + images.shape[0]))
        if images.dtype == torch.uint8:
            images = images.float().div(255)
        elif not images.is_floating_point():
            raise ValueError(f"the data images hold a {images.dtype} tensor; give float images or uint8")
        check_data_images(keys, images)
        return keys, images.float(), (None if labels is None else torch.as_tensor(labels).long())

    # -- the loss ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _targets(self, clean: Tensor, labels: Tensor | None, activations: dict[str, Tensor] | None) -> Any:
        """The rows' targets: the data's labels (``reference="label"``, untargeted), ``None`` when the objective
        holds its classes (a target class, fixed labels: it reads them itself, so no clean forward is run), or
        the objective's default targets on the clean images' evaluation forward (the prediction)."""
        if isinstance(self.objective, LabelObjective):
            if self.objective.target is not None or self.objective.labels is not None:
                return None
            if self.reference == "label":
                if labels is None:
                    raise ValueError("reference='label' needs labelled samples (image, label)")
                return labels.to(clean.device)
        if activations is None:
            activations = self.path.activations(clean)
        return self.objective.default_targets(activations)

    def compute_loss(self, images: Tensor, labels: Tensor | None, keys: Sequence[int], step: int) -> dict[str, Tensor]:
        """The terms of one step on a batch of data images: ``objective`` ``(B,)``, each prior of the shared input
        (unweighted), and ``loss`` ``(B,)`` (``−objective`` plus the weighted priors), whose mean is minimized."""
        count = self.insert.num_random
        seeds = RowRandom(self.seed).stream("start").seeds(keys) if count or self.path.transforms is not None else None
        shared = self.param()
        draws = insert_draws(seeds, step, count).to(images.device) if count else images.new_empty(len(keys), 0)
        x = self.insert(shared, images, draws)
        targets = self._targets(images, labels, None)
        terms = self.path.terms(x, targets, seeds, step)
        loss = terms["loss"]
        for name, prior in zip(self.prior_names, self.priors):
            terms[name] = prior(shared)
            loss = loss + prior.weight * terms[name]
        terms["loss"] = loss
        return terms

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        """One step: the mean loss of this process's batch (DDP averages the gradient over the processes)."""
        if any(m.training for m in self._network.modules()):
            rank_zero_warn("the network was switched to train mode during the fit; putting it back in eval mode")
            self._network.eval()
        keys, images, labels = self._unpack(batch)
        terms = self.compute_loss(images, labels, keys, self.global_step)
        if not torch.isfinite(terms["loss"].detach()).all():
            names = [f"sample-{k}" for k in keys]
            raise NonFiniteError(nonfinite_message({k: v.expand(len(keys)) for k, v in terms.items()}, names,
                                                   self.global_step)
                                 + f"; the (finite) shared input of step {self.global_step} is kept")
        size = len(keys)
        for name, value in terms.items():
            key = name if name in ("objective", "loss") else f"prior/{name}"
            self.log(key, value.detach().mean(), on_step=True, prog_bar=name in ("objective", "loss"),
                     batch_size=size)
        return terms["loss"].mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(list(self.param.parameters()))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """The step engine's update, as every run takes it: the optimizer's step, the projection, and a
        non-finite shared input put back, stopping the run with :class:`~inputopt.engine.NonFiniteError`."""
        # the loss rows are the data's, not the input's: of the engine, only the update of the input applies
        if self._engine is None or self._engine.param.tensor is not self.param.tensor:  # once, on the fit's device
            self._engine = StepEngine(self.param, self.path, targets=(), names=["shared input"])
        self._engine.update(partial(super().optimizer_step, epoch, batch_idx, optimizer, optimizer_closure), self.global_step)

    # -- the held-out fooling rate ------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, images: Tensor, keys: Sequence[int]) -> dict[str, Tensor]:
        """The evaluation forward of held-out images: ``clean`` and ``adversarial`` predictions, ``targets``
        (the target classes, targeted) and ``images`` (with the shared input). Sample ``k``'s patch placement
        comes from ``(seed, k)`` on a stream of its own, the same at every validation."""
        seeds = [RowRandom(self.seed).stream("shared.validation").seed_of(k) for k in keys]
        x = self.insert(self.param(), images, insert_draws(seeds, 0, self.insert.num_random).to(images.device))
        clean = self.path.activations(images, list(dict.fromkeys(["", *self.objective.layers])))
        out = {"clean": clean[""].argmax(1),
               "adversarial": self.path.activations(x, [""])[""].argmax(1), "images": x}
        if self.targeted:
            out["targets"] = self.objective.default_targets(clean).to(images.device)
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        keys, images, _ = self._unpack(batch)
        out = self.evaluate(images, keys)
        if self.targeted:
            self.fooling_rate.update(out["adversarial"], out["targets"], mask=out["clean"] != out["targets"])
        else:
            self.fooling_rate.update(out["adversarial"], out["clean"])

    def on_validation_epoch_end(self) -> None:
        rate = self.fooling_rate.compute()  # synced over the processes
        self.fooling_rate.reset()
        if self.trainer.sanity_checking:
            return
        self.log("val/fooling_rate", rate, sync_dist=False)
        if not self.history or self.history[-1][0] != self.global_step:
            self.history.append((self.global_step, rate.item()))

    # -- Lightning plumbing, as for a fit --------------------------------------------------------------
    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        if stage == "fit" and getattr(self.trainer, "accumulate_grad_batches", 1) != 1:
            raise ValueError(f"accumulate_grad_batches={self.trainer.accumulate_grad_batches}: a shared-input run "
                             f"counts its batches in optimizer steps; use a larger batch_size or more devices")
        from inputopt.callbacks.checkpoints import use_atomic_checkpoints

        use_atomic_checkpoints(self.trainer)  # a checkpoint is written whole or not at all
        self._freeze_network()  # the user's module is handed back as given: at teardown, or when the run fails
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*Total length of `list` across ranks is zero.*")

    def on_fit_start(self) -> None:
        check_max_steps(self.trainer)

    def teardown(self, stage: str) -> None:
        self._give_back_network()

    def configure_callbacks(self) -> list:
        """Lightning's step bar replaced by :class:`~inputopt.callbacks.progress.StepProgressBar` (steps out of
        ``max_steps``: a run may take several passes over the data)."""
        from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

        from inputopt.callbacks.progress import StepProgressBar

        from inputopt.runners.base import _GiveBackRunnerModes

        bar = self.trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar:
            return [StepProgressBar(bar.refresh_rate, bar.process_position), _GiveBackRunnerModes()]
        if type(bar) is RichProgressBar:  # Lightning replaces a callback only by one of its own class
            self.trainer.callbacks = [c for c in self.trainer.callbacks if c is not bar]
            return [StepProgressBar(), _GiveBackRunnerModes()]
        return [_GiveBackRunnerModes()]

    def fingerprint(self) -> dict[str, str]:
        """What defines the result of this run, one string per field of :data:`SHARED_FINGERPRINT_FIELDS`."""
        if self._weights_hash is None:
            self._weights_hash = _tensor_hash([*self._network.state_dict().items()])
        optimizer = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        settings = {k: v for k, v in optimizer.defaults.items() if k not in ("foreach", "fused", "capturable",
                                                                              "differentiable")}
        world = self._world()[0]
        net, spec, problem = self._network, self.problem.spec, self.hparams["problem"]
        return {
            "network": (self.network_name or f"{type(net).__module__}.{type(net).__qualname__}")
            + "".join(f" {key}={getattr(spec, key)!r}" for key in ("layouts", "output")
                      if getattr(spec, key) not in (None, {})),
            "network_weights": self._weights_hash,
            "normalization": str(None if self.normalize is None else _tensor_hash(self.normalize.state_dict().items())),
            **{field: str(problem[field]) for field in ("objective", "priors", "transforms")},
            "param": str(self._param_record),
            "insert": str(self.hparams["insert"]),
            "input_shape": str(self.input_shape),
            "seed": str(self.seed),
            "global_batch_size": str(self.batch_size * world),
            "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}({settings})",
            "reference": self.reference,
            **trainer_numerics(self._trainer),
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        bad = [name for name, value in checkpoint["state_dict"].items()
               if value.is_floating_point() and not torch.isfinite(value).all()]
        if bad:
            raise NonFiniteError(f"refusing to write a checkpoint with non-finite values in {', '.join(bad)}")
        checkpoint["inputopt_fingerprint"] = self.fingerprint()
        checkpoint["inputopt_history"] = [list(row) for row in self.history]  # a resumed run keeps its curve

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [(int(s), float(r)) for s, r in checkpoint.get("inputopt_history", [])]
        saved = checkpoint.get("inputopt_fingerprint")
        if saved is None or self._trainer is None:
            return
        now = self.fingerprint()
        differ = [f for f in SHARED_FINGERPRINT_FIELDS if saved.get(f) != now.get(f)
                  and f not in self.allow_resume_mismatch]
        if differ:
            lines = "\n".join(f"  {f}: checkpoint {saved.get(f)}, now {now.get(f)}" for f in differ)
            raise ValueError(f"refusing to resume: this run's configuration differs from the checkpoint's in "
                             f"{', '.join(differ)}:\n{lines}\nResume with the checkpoint's configuration, or allow "
                             f"the difference with allow_resume_mismatch={differ}.")
