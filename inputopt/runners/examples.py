"""Dataset examples: the natural images that drive each unit most (and least, and in between), found in one
streaming pass over a data set.

:class:`DatasetExamples` is a :class:`~inputopt.runners.base.DatasetRunner`: every test batch goes through the
frozen network up to one layer, and a :class:`~inputopt.metrics.TopKExamples` state keeps, for every
unit, the ``k`` best scores with their data-set indices, maximal positions and labels (memory ``O(units · k)``
whatever the size of the data set). The data set may be map-style or an ``IterableDataset`` (streamed).
Several devices split the data; the states are all-gathered and merged at the end, so the result equals one
process. With ``state_dir``, the pass saves its state every ``save_every`` batches and an interrupted pass
resumes where it stopped, with the result of an uninterrupted one. Each example is cropped to the receptive
field of its unit at its maximal position, computed from the network
(:func:`~inputopt.functional.receptive_field.receptive_field`).
:class:`~inputopt.callbacks.examples.SaveDatasetExamples` writes ``examples.json`` and ``examples.png``.
``inputopt examples --config configs/digits_examples.yaml`` runs both (:func:`examples_main`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from inputopt.capture import OUTPUT, evaluate
from inputopt.engine import check_precision
from inputopt.functional.receptive_field import ReceptiveField, crop_box, receptive_field
from inputopt.layouts import layout_of
from inputopt.metrics.topk import TopKExamples, unit_scores
from inputopt.networks import probe
from inputopt.objectives.base import UnitsObjective
from inputopt.problem import Problem
from inputopt.runners.base import DatasetRunner, check_data_images, stream

__all__ = ["DatasetExamples"]

_GROUPS = ("top", "bottom", "percentiles")


class DatasetExamples(DatasetRunner):
    """The top-``k`` natural images of every unit of a layer over a data set: ``trainer.test(runner)``.

    The layer and the units come from the problem's objective, a
    :class:`~inputopt.objectives.UnitsObjective` (``ChannelSum("features.4", channel="all")``; ``"all"`` is
    resolved from a probe of the first image, as a fit resolves it), and the network and its input normalization
    from the problem's network: the problem of a sweep gives the examples of the units it visualizes. Whatever
    the objective's own reduction (a channel's sum, a unit at the map's centre), a unit is scored on an image by
    its maximum over positions (:func:`~inputopt.metrics.unit_scores`; the position is kept, for crops), or as a
    feature of a ``(B, F)`` layer. The problem's priors, parameterization and transforms play no part. One pass
    over the data: the network runs up to the layer only, under the trainer's device and precision, and a
    :class:`~inputopt.metrics.TopKExamples` state keeps the best ``k`` per unit (ties go to the lowest data-set
    index), optionally the ``k`` lowest (``bottom``) and a sample of the scores from which examples at
    ``percentiles`` of the activation range are taken. Several devices split the data; the state is merged at
    the end, so the result equals one process.

    After the run, :attr:`results` holds ``layer``, ``units``, ``k``, ``map_shape``, ``field_size`` (the
    receptive field's side in pixels, ``None`` where a unit sees the whole image), ``skipped`` (images that
    could not be decoded) and per unit (row) the ``values``, data-set ``indices``, ``positions`` (``[y, x]``
    in the map, or ``None``), ``labels`` (the images' classes, ``None`` for unlabelled data) and ``boxes``
    (each example's receptive field ``[top, left, bottom, right]`` in pixels, or ``None``); with ``bottom``
    or ``percentiles``, the same fields under ``results["bottom"]`` / ``results["percentiles"]``.
    :meth:`example_images` reads the crops back from the data set.

    Args:
        problem: the network (with its weights and input normalization) and a
            :class:`~inputopt.objectives.UnitsObjective` naming the layer (``None``: the output) and its units
            (:class:`~inputopt.problem.Problem`; in a config, its ``problem:`` block).
        dataset: samples ``(image, label, ...)`` or images, in pixel space: a map-style data set or an
            ``IterableDataset`` (streamed).
        k: examples per unit.
        crop_size: the side of the crops, overriding the receptive field (``None``: each example is cropped to
            the receptive field of its unit at its maximal position, the whole image where that is global).
        bottom: also keep the ``k`` images with the lowest (most negative) scores.
        percentiles: percentiles (0-100) of the activation range to show an example of, e.g. ``[99, 90, 50]``.
        sample_size: the images whose scores the percentiles are taken over (a uniform sample spread over the
            data set, see :class:`~inputopt.metrics.TopKExamples`: exact when the data set is no larger).
        batch_size: images per batch.
        num_workers: data-loading worker processes.
        state_dir: where the pass saves its state (one file per process) every ``save_every`` batches, to
            resume after an interruption (``None``: no saves). Removed when the pass ends.
        save_every: batches between two saves.
        skip_unreadable: skip (and count in ``results["skipped"]``) the images that cannot be decoded
            (:class:`~inputopt.data.UnreadableImageError`) instead of failing.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.data import Digits
        >>> from inputopt.objectives import ChannelSum
        >>> problem = Problem("digits", ChannelSum("features.4", channel=[0, 5]))
        >>> runner = DatasetExamples(problem, Digits(limit=100), k=3)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> runner.results["indices"], runner.results["field_size"], runner.example_images().shape
        ([[7, 1, 0], [26, 90, 27]], [8, 8], torch.Size([2, 3, 1, 8, 8]))
    """

    def __init__(
        self,
        problem: Problem,
        dataset: Dataset,
        k: int = 9,
        crop_size: int | None = None,
        bottom: bool = False,
        percentiles: Sequence[float] = (),
        sample_size: int = 4096,
        batch_size: int = 64,
        num_workers: int = 0,
        state_dir: str | os.PathLike | None = None,
        save_every: int = 100,
        skip_unreadable: bool = True,
    ) -> None:
        problem = Problem.of(problem)
        objective = problem.require(UnitsObjective, "dataset examples", "ChannelSum('features.4', channel='all')")
        super().__init__(problem.network, dataset, batch_size, num_workers)
        self.problem = problem
        self.skip_unreadable = bool(skip_unreadable)
        if crop_size is not None and (isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1):
            raise ValueError(f"crop_size must be an int >= 1 or None, got {crop_size!r}")
        if not self.streamed and len(dataset) == 0:
            raise ValueError("the data set is empty")
        limit = len(dataset) if not self.streamed else None
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (limit is not None and k > limit):
            # more than the data set would pad every unit with -inf scores and black tiles
            raise ValueError(f"k must be an int in [1, {limit if limit is not None else '...'}] (the size of the data "
                             f"set), got {k!r}")
        percentiles = [float(p) for p in percentiles]
        if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
            raise ValueError(f"save_every must be an int >= 1, got {save_every!r}")
        self.network_name = problem.network_name
        self.objective = objective
        self._key = objective.layer  # the captured layer's key ("": the output)
        self.layer = None if objective.layer == OUTPUT else objective.layer
        self.normalize = problem.normalize
        self.crop_size = crop_size
        first = self.first_image()
        self.image_shape = list(first.shape)
        # checks the layer, resolves "all" and checks the units against the layer's channels/features
        activations = probe(self.network, first.unsqueeze(0).float(), [self._key], self.normalize, self.network_name)
        objective.resolve(activations)
        objective.check_units(activations[self._key])
        probe_ = activations[self._key]
        self.units = objective.units
        # the problem in the resume state's fingerprint (a network given as a module: its class and state's hash)
        self._problem_record = json.dumps(problem.config(), sort_keys=True, default=str)
        self.map_shape = list(probe_.shape[-2:]) if probe_.ndim == 4 else None
        if crop_size is not None and crop_size > min(first.shape[-2:]):
            raise ValueError(f"crop_size {crop_size} is larger than the images {tuple(first.shape)}")
        self.k = k
        self.bottom = bool(bottom)
        self.percentiles = percentiles
        self.sample_size = sample_size if percentiles else 0
        self.topk = TopKExamples(len(self.units), k, bottom=self.bottom, percentiles=percentiles,
                                 sample_size=sample_size)
        self.state_dir = None if state_dir is None else Path(state_dir)
        self.save_every = save_every
        self.results: dict[str, Any] = {}
        self._field: ReceptiveField | None = None

    # -- the receptive field -------------------------------------------------------------------------------
    def receptive_field(self) -> ReceptiveField | None:
        """The receptive field of every unit of the layer at the data's image size (``None`` for a ``(B, F)``
        layer, whose units are not at positions); computed once, on the CPU."""
        if self.map_shape is None:
            return None
        if self._field is None:
            self._field = receptive_field(self.network, self._key, tuple(self.image_shape), self.normalize)
        return self._field

    # -- the pass --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _activations(self, images: Tensor) -> Tensor:
        return evaluate(self.network, images.float(), [self._key], self.normalize)[self._key]

    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        self.skip_batches, self._skipped, self._seen = 0, 0, 0
        self._resume()

    def test_step(self, batch: tuple | None, batch_idx: int) -> None:
        if self.skip_unreadable:
            batch, skipped = batch
            self._skipped += int(skipped)
        if batch is not None:
            indices, images = batch[0], batch[1]
            check_data_images(indices, images)
            labels = batch[2] if len(batch) > 2 and isinstance(batch[2], Tensor) and batch[2].shape == indices.shape \
                and not batch[2].is_floating_point() else None
            scores, positions = unit_scores(self._activations(images), self.units)
            self.topk.update(scores.float(), indices, positions, labels)
            self._seen += len(indices)
            self._seen_here += len(indices)
        done = self.skip_batches + batch_idx + 1
        if self.state_dir is not None and done % self.save_every == 0:
            self._save(done)

    @property
    def images_per_second(self) -> float | None:
        """Images read per second since this pass (or its resumed part) started; shown on the progress bar."""
        start = getattr(self, "_start", None)
        return None if start is None else self._seen_here / max(time.perf_counter() - start, 1e-9)

    def configure_callbacks(self) -> list:
        """The base's callbacks, and :class:`~inputopt.callbacks.progress.ImagesPerSecond` on the progress bar."""
        from inputopt.callbacks.progress import ImagesPerSecond

        return [*super().configure_callbacks(), ImagesPerSecond()]

    def on_test_epoch_start(self) -> None:
        self.results = {}
        self._start, self._seen_here = time.perf_counter(), 0

    def on_test_epoch_end(self) -> None:
        #: seconds from the first batch of this process's pass (or its resumed part) to its last
        self.pass_seconds = time.perf_counter() - self._start
        top = self.topk.compute()  # a collective under several processes: merged across them
        skipped = torch.tensor(float(self._skipped), device=self.device)
        if self.trainer.world_size > 1:
            skipped = self.trainer.strategy.reduce(skipped, reduce_op="sum")
        self.results = {
            "network": self.network_name, "layer": self.layer, "units": self.units, "k": self.k,
            "crop_size": self.crop_size, "map_shape": self.map_shape, "field_size": self._field_size(),
            "skipped": int(skipped.item()), **self._rows(top), "class_names": self._class_names()}
        if self.bottom:
            self.results["bottom"] = self._rows(top["bottom"])
        if self.percentiles:
            chosen = top["percentiles"]
            self.results["percentiles"] = {"q": self.percentiles, "sampled": chosen.pop("sampled"),
                                           **self._rows(chosen)}
        self.topk.reset()
        self._remove_state()

    def _patch(self) -> list[int] | None:
        """``(height, width)`` of one cell of a token layer's patch grid, where its field is global (attention):
        a transformer unit's position is a patch, and its examples are cropped to that patch."""
        field = self.receptive_field()
        layout = layout_of(self.network, self._key)
        if field is None or not field.is_global or layout is None or layout.kind != "tokens" or not self.map_shape:
            return None
        return [self.image_shape[1] // self.map_shape[0], self.image_shape[2] // self.map_shape[1]]

    def _box(self, field: ReceptiveField | None, unit: int, position: list[int] | None) -> list[int] | None:
        """An example's box: its unit's receptive field at its position, or the token's patch (:meth:`_patch`)."""
        if field is None or position is None:
            return None
        patch = self._patch()
        if patch is not None:
            return [position[0] * patch[0], position[1] * patch[1], (position[0] + 1) * patch[0],
                    (position[1] + 1) * patch[1]]
        return list(field.box(unit, position))

    def _field_size(self) -> list[int] | None:
        field = self.receptive_field()
        if field is None:
            return None
        if field.is_global:
            return self._patch()
        return list(field.size)

    def _rows(self, found: dict[str, Tensor]) -> dict[str, list]:
        """Per unit (row): values, indices, positions, labels and boxes, as lists (``(U, n)`` also for one unit)."""
        found = {name: found[name].reshape(len(self.units), -1).cpu() for name in ("values", "indices", "positions",
                                                                                    "labels")}
        width = self.map_shape[1] if self.map_shape else 1
        positions = [[list(divmod(int(p), width)) if p >= 0 else None for p in row] for row in found["positions"]]
        field = self.receptive_field()
        boxes = [[self._box(field, unit, position) for position in row] for unit, row in zip(self.units, positions)]
        labels = found["labels"].tolist()
        return {"values": found["values"].tolist(), "indices": found["indices"].tolist(), "positions": positions,
                "labels": [[None if label < 0 else label for label in row] for row in labels], "boxes": boxes}

    def _class_names(self) -> dict[int, str] | None:
        """``{label: name}`` of a data set that names its classes (``class_to_idx`` or ``classes``)."""
        mapping = getattr(self.dataset, "class_to_idx", None)
        if isinstance(mapping, dict):
            return {int(index): str(name) for name, index in mapping.items()}
        classes = getattr(self.dataset, "classes", None)
        if isinstance(classes, (list, tuple)):
            return {i: str(name) for i, name in enumerate(classes)}
        return None

    # -- resuming ------------------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        trainer = self._trainer
        what = {"problem": self._problem_record, "layer": self.layer, "units": self.units, "k": self.k,
                "bottom": self.bottom, "sample_size": self.sample_size,
                "batch_size": self.batch_size, "world_size": trainer.world_size if trainer is not None else 1,
                "size": None if self.streamed else len(self.dataset), "dataset": type(self.dataset).__qualname__}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()

    def _state_file(self) -> Path:
        rank = self._trainer.global_rank if self._trainer is not None else 0
        return self.state_dir / f"examples-state-rank{rank}.pt"

    def _save(self, done: int) -> None:
        """Write the metric's state and the position in the data atomically (a temporary file in the same
        folder, then renamed): a kill at any moment leaves the previous or the new state, whole."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self._state_file()
        state = {"fingerprint": self._fingerprint(), "batches": done, "skipped": self._skipped, "seen": self._seen,
                 "metric": {name: getattr(self.topk, name).cpu() for name in self.topk._defaults}}
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)

    def _resume(self) -> None:
        if self.state_dir is None or not self._state_file().is_file():
            return
        state = torch.load(self._state_file(), weights_only=True)
        if state["fingerprint"] != self._fingerprint():
            raise ValueError(f"{self._state_file()} holds the state of another pass (another problem, layer, units, k, "
                             f"batch size, number of processes or data set); remove it or use another state_dir")
        for name, value in state["metric"].items():
            setattr(self.topk, name, value.to(getattr(self.topk, name).device))
        self.skip_batches, self._skipped, self._seen = state["batches"], state["skipped"], state["seen"]

    def _remove_state(self) -> None:
        if self.state_dir is not None and self._state_file().is_file():
            self._state_file().unlink()

    # -- the results -----------------------------------------------------------------------------------------
    def dataset_max(self) -> dict[int, float]:
        """Each unit's maximum over the data set (``{unit: value}``), for :class:`~inputopt.metrics.ActivationRatio`."""
        return {unit: row[0] for unit, row in zip(self.results["units"], self.results["values"])}

    def crop_size_of_layer(self) -> list[int] | None:
        """The ``(height, width)`` of the crops: ``crop_size``, else the receptive field's size (``None``: whole
        images)."""
        if self.map_shape is None:
            return None
        if self.crop_size is not None:
            return [self.crop_size, self.crop_size]
        return self.results.get("field_size") if self.results else self._field_size()

    def _read_samples(self, wanted: set[int]) -> dict[int, tuple[Tensor, Any]]:
        """The images of the data-set indices ``wanted`` (a second pass over a streamed data set)."""
        if not self.streamed:
            return {index: self.dataset_image(index) for index in wanted}
        found = {}
        for index, sample in stream(self.dataset, True, wanted.__contains__):
            if sample is not None:
                found[index] = self._image_of(sample)
                if len(found) == len(wanted):
                    break
        return found

    def example_images(self, group: Literal["top", "bottom", "percentiles"] = "top", cropped: bool = True) -> Tensor:
        """``(U, n, C, h, w)``: every unit's examples of ``group`` (``"top"``: best first; ``"bottom"``: lowest
        first; ``"percentiles"``: in the order of :attr:`percentiles`), each cropped to its receptive field (or
        ``crop_size``) around its maximal position (``cropped=False``: the whole images, to score them again);
        empty slots are zeros."""
        if not self.results:
            raise RuntimeError("no results yet: run trainer.test(runner) first")
        if group not in _GROUPS or (group != "top" and group not in self.results):
            raise ValueError(f"group must be one of {[g for g in _GROUPS if g == 'top' or g in self.results]}, "
                             f"got {group!r}")
        rows = self.results if group == "top" else self.results[group]
        images = self._read_samples({i for row in rows["indices"] for i in row if i >= 0})
        size = self.crop_size_of_layer() if cropped else None
        blank = torch.zeros(self.image_shape)
        out = []
        for indices, boxes in zip(rows["indices"], rows["boxes"]):
            row = []
            for index, box in zip(indices, boxes):
                image = images.get(index, blank) if index >= 0 else blank
                if size is not None and box is not None:
                    top, left, bottom, right = crop_box(image, box, size)
                    image = image[..., top:bottom, left:right]
                row.append(image.float())
            out.append(torch.stack(row))
        return torch.stack(out)
