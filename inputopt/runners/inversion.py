"""Feature inversion over a data set: one inversion per image, inside the test loop of a dataset runner."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchmetrics import MeanMetric

from inputopt._config import build, instantiate
from inputopt.engine import check_precision
from inputopt.functional.init import row_seeds
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.networks import NetworkSpec
from inputopt.objectives.inversion import FeatureMatch
from inputopt.params.base import ImageParam
from inputopt.params.pixel import PixelImage
from inputopt.priors.base import Prior
from inputopt.runners.base import DatasetRunner, inner_optimization
from inputopt.runners.sweep import _optimizer
from inputopt.transforms.base import Transform, Transforms

__all__ = ["FeatureInversion"]


class FeatureInversion(DatasetRunner):
    """Invert a layer's activations for every image of a data set (Mahendran & Vedaldi 2015).

    Each test batch of images gives its targets, the activations of ``layer`` (:class:`FeatureMatch`, L2 or
    cosine); a fresh parameterization started from noise seeded by ``(seed, sample index)`` is optimized for
    ``steps`` steps (:func:`~inputopt.engine.optimize`: the loss path, priors, transforms and projection of a
    fit) so that its activations match them. What the inversion keeps of the image is what the layer keeps.
    Several devices split the images (the runner's distributed sampler); an image's inversion does not
    depend on its batch or process.

    :meth:`test_step` returns the batch's ``indices``, ``images`` (the inversions) and ``scores`` (the final
    :class:`FeatureMatch` scores); they are also kept in :attr:`inversions` (index → image, on the CPU), and
    the mean score is logged as ``feature_match``.

    Args:
        network: a network name or a frozen ``nn.Module``.
        layer: the dotted name of the layer to invert.
        dataset: ``(image, label)`` samples (or images), in the network's pixel space.
        metric: ``"l2"`` or ``"cosine"`` (see :class:`FeatureMatch`).
        priors: penalties on the inversions (the image prior: e.g. total variation, edge energy).
        param: the parameterization of the inversions (default ``PixelImage(mean=0.5, std=0.01)``).
        transforms: robustness transforms of the loss forward (e.g. jitter, as Mahendran & Vedaldi).
        weights, state_dict, mean, std: as for :class:`~inputopt.InputOptimization`.
        optimizer: builds the optimizer (a ``functools.partial`` or a config; default Adam, lr 0.05).
        steps: optimization steps per batch.
        seed: the seed of the starting noise and transforms, with the sample index.
        batch_size: images inverted together.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> runner = FeatureInversion("digits", "features.4", Digits(limit=2), steps=3)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> sorted(runner.inversions), runner.inversions[0].shape
        ([0, 1], torch.Size([1, 32, 32]))
    """

    def __init__(self, network: str | nn.Module, layer: str, dataset: Dataset, metric: str = "l2",
                 priors: Sequence[Prior] | None = None, param: ImageParam | None = None,
                 transforms: Sequence[Transform] | None = None, weights: str | None = None,
                 state_dict: str | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, optimizer: OptimizerCallable | Mapping[str, Any] | None = None,
                 steps: int = 200, seed: int = 0, batch_size: int = 8, num_workers: int = 0) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        spec = NetworkSpec(network, weights, state_dict, mean, std)
        net = spec.build(seed)
        super().__init__(net, dataset, batch_size, num_workers)
        self.objective = FeatureMatch(layer, metric)
        self.priors = nn.ModuleList([build(p) for p in (priors or [])])
        self.transforms = Transforms(transforms or [])
        self.normalize = spec.normalization()
        self.param_config = (PixelImage(mean=0.5, std=0.01) if param is None else build(param)).config()
        self.optimizer_factory, _ = _optimizer(optimizer if optimizer is not None else
                                               {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}})
        self.steps, self.seed = steps, seed
        self.path = LossPath(net, self.objective, self.priors, self.transforms, self.normalize)
        first = dataset[0]
        image = first[0] if isinstance(first, (tuple, list)) else first
        self.image_shape = tuple(image.shape)
        instantiate(self.param_config)._check_shape(self.image_shape)
        self.transforms.check(self.image_shape)
        with torch.no_grad():  # a bad layer fails here, before any run
            self.path.default_targets(image.float()[None])
        self.feature_match = MeanMetric()
        self.inversions: dict[int, Tensor] = {}

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        self.network.eval()
        warnings.filterwarnings("ignore", message=".*test_dataloader' does not have many workers.*")

    def on_test_epoch_start(self) -> None:
        self.inversions = {}

    def test_step(self, batch: tuple, batch_idx: int) -> dict[str, Any]:
        """Invert one batch; returns its ``indices``, ``images`` (the inversions) and ``scores``."""
        indices, images = batch[0].tolist(), batch[1]
        with inner_optimization():
            images = images.clone().float()
            targets = self.path.default_targets(images)
            param = instantiate(self.param_config).initialize(self.image_shape, keys=indices, seed=self.seed)
            param = param.to(self.device)
            seeds = row_seeds(indices, self.seed)
            optimize(param, self.path, self.steps, self.optimizer_factory, targets, seeds)
            with torch.no_grad():
                inverted = param().detach()
                scores = self.objective(self.path.activations(inverted), targets)
        self.feature_match.update(scores)
        for index, image in zip(indices, inverted.cpu()):
            self.inversions[index] = image
        return {"indices": indices, "images": inverted, "scores": scores}

    def on_test_epoch_end(self) -> None:
        self.log("feature_match", self.feature_match.compute(), sync_dist=False)
        self.feature_match.reset()
