"""Feature inversion over a data set: one inversion per image, inside the test loop of a dataset runner."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics import CatMetric

from inputopt._config import instantiate
from inputopt.engine import check_precision, optimize
from inputopt.functional.random import RowRandom
from inputopt.objectives.inversion import FeatureMatch
from inputopt.params.pixel import PixelImage
from inputopt.problem import Problem
from inputopt.runners.base import DatasetRunner, check_data_images, check_not_empty, inner_optimization
from inputopt.runners.sweep import _optimizer

__all__ = ["FeatureInversion"]


class FeatureInversion(DatasetRunner):
    """Invert a layer's activations for every image of a data set (Mahendran & Vedaldi 2015).

    Each test batch of images gives its targets, the activations of the objective's layer (the problem's
    :class:`~inputopt.objectives.FeatureMatch`, L2 or cosine); a fresh copy of the problem's parameterization
    started from noise seeded by ``(seed, sample index)`` is optimized for ``steps`` steps
    (:func:`~inputopt.engine.optimize`: the loss path, priors, transforms and projection of a fit) so that its
    activations match them. What the inversion keeps of the image is what the layer keeps. Several devices
    split the images (the runner's distributed sampler); an image's inversion does not depend on its batch or
    process.

    After the run, *every* process holds the results of all images, in data-set order: the batches' results
    are torchmetrics ``cat`` states (:class:`~torchmetrics.CatMetric`), all-gathered at the end of the test epoch
    as the other runners' metrics are. :attr:`results` holds ``indices`` ``(N,)``, ``images`` ``(N, C, H, W)``
    (the inversions), ``scores`` ``(N,)`` (the final :class:`~inputopt.objectives.FeatureMatch` scores: minus the
    relative squared feature distance for ``"l2"``, the cosine for ``"cosine"``) and ``start_scores`` (those of
    the starting noise), on the CPU; :attr:`inversions` maps index → image. The mean final score is logged as
    ``feature_match``. :class:`~inputopt.callbacks.inversion.SaveInversions` writes them;
    ``inputopt invert --config configs/digits_inversion.yaml`` runs both.

    Args:
        problem: the network, a :class:`~inputopt.objectives.FeatureMatch` objective (the layer to invert and
            the metric), the priors on the inversions (the image prior: e.g. total variation, edge energy), their
            parameterization (default ``PixelImage(mean=0.5, std=0.01)``: grey noise), the robustness
            transforms of the loss forward (e.g. jitter, as Mahendran & Vedaldi) and the seed of the starting
            noise and transforms, with the sample index (:class:`~inputopt.problem.Problem`).
        dataset: ``(image, label)`` samples (or images), in the network's pixel space.
        optimizer: builds the optimizer (a ``functools.partial`` or a config; default Adam, lr 0.05).
        steps: optimization steps per batch.
        batch_size: images inverted together.
        num_workers: data-loading worker processes.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> from inputopt.objectives import FeatureMatch
        >>> runner = FeatureInversion(Problem("digits", FeatureMatch("features.4")), Digits(limit=2), steps=3)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> sorted(runner.inversions), runner.inversions[0].shape
        ([0, 1], torch.Size([1, 32, 32]))
        >>> bool((runner.results["scores"] > runner.results["start_scores"]).all())  # closer than the noise
        True
    """

    #: The entries of :attr:`results`.
    RESULTS = ("indices", "images", "scores", "start_scores")

    def __init__(self, problem: Problem, dataset: Dataset,
                 optimizer: OptimizerCallable | Mapping[str, Any] | None = None, steps: int = 200,
                 batch_size: int = 8, num_workers: int = 0) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        problem = Problem.of(problem)
        objective = problem.require(FeatureMatch, "a feature inversion", "FeatureMatch('features.4', metric='l2')")
        super().__init__(problem.network, dataset, batch_size, num_workers)
        self.problem = problem
        self.objective = objective
        self.priors = nn.ModuleList(problem.priors)
        self.transforms = problem.transforms
        self.normalize = problem.normalize
        self.param_config = problem.new_param(PixelImage(mean=0.5, std=0.01)).config()
        self.optimizer_factory, _ = _optimizer(optimizer if optimizer is not None else
                                               {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}})
        self.steps, self.seed = steps, problem.seed
        self.path = problem.path()
        check_not_empty(dataset)
        image = self.first_image()  # a map-style or a streamed data set
        self.image_shape = tuple(image.shape)
        instantiate(self.param_config)._check_shape(self.image_shape)
        with torch.no_grad():  # a bad layer or image size fails here, before any run
            self.objective.default_targets(problem.probe(image.float()[None]))
        # the batches' results: cat states, gathered from every process at the end of the test epoch
        self.gathered = nn.ModuleDict({name: CatMetric(nan_strategy="disable") for name in self.RESULTS})
        self.gathered["indices"].set_dtype(torch.float64)  # exact up to 2**53
        self.results: dict[str, Tensor] = {}
        self.inversions: dict[int, Tensor] = {}

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        warnings.filterwarnings("ignore", message=".*test_dataloader' does not have many workers.*")

    def on_test_epoch_start(self) -> None:
        self.results, self.inversions = {}, {}
        for metric in self.gathered.values():
            metric.reset()

    def test_step(self, batch: tuple, batch_idx: int) -> dict[str, Tensor]:
        """Invert one batch; returns its ``indices``, ``images`` (the inversions), ``scores`` and ``start_scores``."""
        indices, images = batch[0], batch[1]
        check_data_images(indices, images)
        with inner_optimization():
            images = images.clone().float()
            targets = self.path.default_targets(images)
            param = instantiate(self.param_config).initialize(self.image_shape, keys=indices.tolist(), seed=self.seed)
            param = param.to(self.device)
            with torch.no_grad():
                start_scores = self.objective(self.path.activations(param()), targets)
            optimize(param, self.path, self.steps, self.optimizer_factory, targets,
                     RowRandom(self.seed).stream("start").seeds(indices.tolist()), callbacks=[self.stop_callback])
            with torch.no_grad():
                inverted = param().detach()
                scores = self.objective(self.path.activations(inverted), targets)
        out = {"indices": indices, "images": inverted, "scores": scores, "start_scores": start_scores}
        for name, metric in self.gathered.items():
            metric.update(out[name])
        return out

    def on_test_epoch_end(self) -> None:
        shapes = {"images": self.image_shape}  # compute() squeezes a single value to a 0-d tensor: reshaped
        gathered = {name: metric.compute().cpu().reshape(-1, *shapes.get(name, ()))  # a collective
                    for name, metric in self.gathered.items()}
        order = gathered["indices"].argsort()
        self.results = {name: values[order] for name, values in gathered.items()}
        self.results["indices"] = self.results["indices"].long()
        self.inversions = dict(zip(self.results["indices"].tolist(), self.results["images"]))
        if len(order):
            self.log("feature_match", self.results["scores"].mean(), sync_dist=False)  # the same on every process
        for metric in self.gathered.values():
            metric.reset()
