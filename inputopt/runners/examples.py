"""Dataset examples: the natural images that drive each unit most, found in one pass over a data set.

:class:`DatasetExamples` is a :class:`~inputopt.runners.base.DatasetRunner`: every test batch goes through the
frozen network up to one layer, and a :class:`~inputopt.metrics.TopKExamples` state keeps, for every
unit, the ``k`` best scores with their data-set indices and maximal positions. Several devices split the
data with the runner's distributed sampler; the states are all-gathered and merged at the end, so the
result equals one process. :class:`~inputopt.callbacks.examples.SaveDatasetExamples` writes ``examples.json`` and ``examples.png``.
``inputopt examples --config configs/digits_examples.yaml`` runs both (:func:`examples_main`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from inputopt.capture import OUTPUT, evaluate
from inputopt.engine import check_precision
from inputopt.metrics.topk import TopKExamples, unit_scores
from inputopt.networks import NetworkSpec, probe
from inputopt.runners.base import DatasetRunner

__all__ = ["DatasetExamples", "crop_around"]


def crop_around(image: Tensor, position: int, map_shape: Sequence[int], size: int) -> Tensor:
    """The ``size × size`` crop of ``image`` centred on a position of a layer's ``(h, w)`` map.

    The map position ``(y, x)`` (flat index ``y·w + x``) maps to the input pixel ``((y + ½)·H/h,
    (x + ½)·W/w)``, the centre of the cell it covers; the crop is shifted to stay inside the image.

    Args:
        image: ``(C, H, W)``.
        position: flat index into the map (``-1``: no position, the whole image is returned).
        map_shape: ``(h, w)`` of the layer's map.
        size: side of the crop in pixels (at most ``min(H, W)``).

    Example:
        >>> image = torch.arange(64.0).view(1, 8, 8)
        >>> crop_around(image, position=0, map_shape=(4, 4), size=2)  # the top-left cell
        tensor([[[0., 1.],
                 [8., 9.]]])
    """
    if position < 0:
        return image
    height, width = image.shape[-2:]
    if not 1 <= size <= min(height, width):
        raise ValueError(f"crop size must be in [1, {min(height, width)}] for {height}x{width} images, got {size}")
    h, w = map_shape
    y, x = divmod(int(position), w)
    top = min(max(round((y + 0.5) * height / h - size / 2), 0), height - size)
    left = min(max(round((x + 0.5) * width / w - size / 2), 0), width - size)
    return image[..., top:top + size, left:left + size]


class DatasetExamples(DatasetRunner):
    """The top-``k`` natural images of every unit of a layer over a data set: ``trainer.test(runner)``.

    A unit is a channel of a ``(B, C, H, W)`` layer, scored on an image by its maximum over positions
    (:func:`~inputopt.metrics.unit_scores`; the position is kept, for crops), or a feature of a ``(B, F)``
    layer. One pass over the data: the network runs up to ``layer`` only, under the trainer's device
    and precision, and a :class:`~inputopt.metrics.TopKExamples` state keeps the best ``k`` per unit (ties
    go to the lowest data-set index). Several devices split the data; the state is merged at the end,
    so the result equals one process.

    After the run, :attr:`results` holds ``layer``, ``units``, ``k``, ``map_shape`` and per unit
    (row) the ``values``, data-set ``indices`` and ``positions`` (``[y, x]`` in the map, or ``None``);
    :meth:`example_images` reads the images (or crops) back from the data set.

    Args:
        network: a network name (zoo, torchvision, dotted path) or an ``nn.Module`` (frozen in place).
        layer: dotted layer name from ``named_modules()`` (``None``: the output).
        units: channel/feature indices, or ``"all"``.
        dataset: samples ``(image, ...)`` or images, in pixel space.
        k: examples per unit.
        crop_size: for conv layers, the side of the crop around the maximal position (a fixed size,
            for instance about the layer's receptive field); ``None``: whole images.
        batch_size: images per batch.
        num_workers: data-loading worker processes.
        weights: torchvision weights name for a named network.
        state_dict: local state_dict file for a named network.
        mean: per-channel mean subtracted before the network (with ``std``).
        std: per-channel standard deviation.
        seed: the seed of random weights, for a named network without weights.
        layouts: per-layer layouts declaring or overriding the network's (:mod:`inputopt.layouts`), e.g.
            ``{"blocks.3": {"kind": "tokens", "special": 1, "grid": [14, 14]}}``.
        output: for a network whose forward returns a tuple, dict or dataclass, the output to use (an
            index, a key or a field such as ``"logits"``).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> runner = DatasetExamples("digits", "features.4", [0, 5], Digits(limit=100), k=3)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> runner.results["indices"], runner.example_images().shape
        ([[7, 1, 0], [26, 90, 27]], torch.Size([2, 3, 1, 32, 32]))
    """

    def __init__(
        self,
        network: str | nn.Module,
        layer: str | None,
        units: int | Sequence[int] | Literal["all"],
        dataset: Dataset,
        k: int = 9,
        crop_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        weights: str | None = None,
        state_dict: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
        layouts: Mapping[str, Any] | None = None,
        output: str | int | None = None,
    ) -> None:
        spec = NetworkSpec(network, weights, state_dict, mean, std, layouts, output)
        super().__init__(spec.build(seed), dataset, batch_size, num_workers)
        if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1):
            raise ValueError(f"crop_size must be an int >= 1 or None, got {crop_size!r}")
        if len(dataset) == 0:
            raise ValueError("the data set is empty")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(dataset):
            # more than the data set would pad every unit with -inf scores and black tiles
            raise ValueError(f"k must be an int in [1, {len(dataset)}] (the size of the data set), got {k!r}")
        self.network_name = spec.name
        self.layer = layer
        self.normalize = spec.normalization()
        self.crop_size = crop_size
        layer_out = [layer or OUTPUT]  # checks the layer, gives the units and the map
        probe_ = probe(self.network, self.dataset_image(0).unsqueeze(0).float(), layer_out, self.normalize,
                       self.network_name)[layer or OUTPUT]
        count = probe_.shape[1]
        if units == "all":
            units = list(range(count))
        units = [units] if isinstance(units, int) and not isinstance(units, bool) else list(units)
        if not units or not all(isinstance(u, int) and not isinstance(u, bool) and 0 <= u < count for u in units):
            raise ValueError(f"units must be ints in [0, {count}) for layer {layer!r} ({count} channels/features), "
                             f"or 'all'; got {units!r}")
        self.units = units
        self.map_shape = list(probe_.shape[-2:]) if probe_.ndim == 4 else None
        if crop_size is not None and crop_size > min(self.dataset_image(0).shape[-2:]):
            raise ValueError(f"crop_size {crop_size} is larger than the images {tuple(self.dataset_image(0).shape)}")
        self.k = k
        self.topk = TopKExamples(len(units), k)
        self.results: dict[str, Any] = {}

    @torch.no_grad()
    def _activations(self, images: Tensor) -> Tensor:
        return evaluate(self.network, images.float(), [self.layer or OUTPUT], self.normalize)[self.layer or OUTPUT]

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        indices, images = batch[0], batch[1]
        scores, positions = unit_scores(self._activations(images), self.units)
        self.topk.update(scores.float(), indices, positions)

    def on_test_epoch_start(self) -> None:
        self.results = {}
        self.topk.reset()

    def on_test_epoch_end(self) -> None:
        top = self.topk.compute()  # a collective under several processes: merged across them
        # (U, k), also for one unit and k = 1, which compute() squeezes to 0-d tensors
        top = {name: value.reshape(len(self.units), self.k) for name, value in top.items()}
        positions = top["positions"].cpu()
        width = self.map_shape[1] if self.map_shape else 1
        self.results = {
            "network": self.network_name, "layer": self.layer, "units": self.units, "k": self.k,
            "crop_size": self.crop_size, "map_shape": self.map_shape,
            "values": top["values"].cpu().tolist(), "indices": top["indices"].cpu().tolist(),
            "positions": [[list(divmod(int(p), width)) if p >= 0 else None for p in row] for row in positions]}
        self.topk.reset()

    def dataset_max(self) -> dict[int, float]:
        """Each unit's maximum over the data set (``{unit: value}``), for :class:`~inputopt.metrics.ActivationRatio`."""
        return {unit: row[0] for unit, row in zip(self.results["units"], self.results["values"])}

    def example_images(self) -> Tensor:
        """``(U, k, C, h, w)``: every unit's examples, best first, cropped when ``crop_size`` is set
        (empty slots, when the data set has fewer than ``k`` images, are zeros)."""
        if not self.results:
            raise RuntimeError("no results yet: run trainer.test(runner) first")
        rows = []
        for indices, positions in zip(self.results["indices"], self.results["positions"]):
            row = []
            for index, position in zip(indices, positions):
                image = self.dataset_image(index) if index >= 0 else torch.zeros_like(self.dataset_image(0))
                if self.crop_size is not None and self.map_shape is not None:
                    flat = position[0] * self.map_shape[1] + position[1] if position is not None else 0
                    image = crop_around(image, flat, self.map_shape, self.crop_size)
                row.append(image.float())
            rows.append(torch.stack(row))
        return torch.stack(rows)
