"""The quality metrics of a fit's images, computed and written when it ends."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import Metric

from inputopt.callbacks._checks import _check_module, _output_dir
from inputopt.metrics.base import check_metrics
from inputopt.module import InputOptimization
from inputopt.results import read_record, strict_json, write_text


class QualityMetrics(Callback):
    """At the end of a run, score the images with the quality metrics of :mod:`inputopt.metrics`: write
    them to ``metrics.json`` (beside :class:`~inputopt.callbacks.images.SaveImages`'s files) and log them to the trainer's loggers
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
    - ``<name>``: for each entry of ``metrics``, that torchmetrics ``Metric`` updated with the images
      (``metric.update(images)``, pixel space ``(B, C, H, W)``) and computed to one number: a metric of your
      own added to the run (``docs/extending.md``, "A metric").

    Images are scored as the run's network sees them (its ``mean``/``std`` normalization; no transforms).
    The settings are checked when the run starts, so a bad one fails before the first step.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        transfer_networks: names of independent networks (zoo, torchvision, dotted path).
        examples: path of an ``examples.json`` written by ``inputopt examples``.
        diversity_layer: dotted layer name of the run's network (``""``: the output).
        high_frequency_cutoff: cutoff of the high-frequency energy, in cycles per pixel.
        metrics: more metrics, by the name they are written under (in a config: ``name: {class_path: ...,
            init_args: ...}``); none by default, which keeps the values above only.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.callbacks.images import SaveImages
        >>> trainer = Trainer(max_steps=100, callbacks=[SaveImages("results/digits"),
        ...     QualityMetrics("results/digits", transfer_networks=["digits_b"], diversity_layer="features.4")])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, transfer_networks: list[str] | None = None,
                 examples: str | os.PathLike | None = None, diversity_layer: str | None = None,
                 high_frequency_cutoff: float = 0.25, metrics: dict[str, Metric] | None = None) -> None:
        from inputopt.metrics import high_frequency_energy

        self.metrics = check_metrics(metrics, "QualityMetrics", reserved=("high_frequency_energy", "activation_ratio",
                                                                          "diversity", "transfer_accuracy"))

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
        record = read_record(self.examples)
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
        for name, metric in self.metrics.items():
            metric = metric.to(images.device)
            metric.reset()
            metric.update(images)
            value = metric.compute()
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ValueError(f"QualityMetrics: metric {name!r} ({type(metric).__name__}) must compute one number, "
                                 f"got {value!r}")
            values[name] = value.item()
        self.values = values
        return values

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        module = _check_module(pl_module, "QualityMetrics")
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        values = self.compute(module)
        for logger in trainer.loggers:
            logger.log_metrics({f"quality/{name}": value for name, value in values.items()}, step=trainer.global_step)
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / "metrics.json"
        record = {**values, "high_frequency_cutoff": self.high_frequency_cutoff, "images": module.image_names()}
        write_text(self.path, strict_json(record) + "\n")
        rank_zero_info("Quality metrics:\n" + "\n".join(f"  {name}: {value:.4g}" for name, value in values.items()))

