"""Evaluate an attack over a data set: :class:`AttackEvaluation`, a dataset runner."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchmetrics import MeanMetric, Metric

from inputopt.attacks.base import Attack, AttackResult
from inputopt.functional.random import RowRandom
from inputopt.functional.sphere import sphere_label_changes
from inputopt.metrics import AttackSuccessRate, PerturbationNorms, RobustAccuracy, SphereLabelChange
from inputopt.metrics.base import check_metrics
from inputopt.runners.base import DatasetRunner, check_data_images, check_not_empty, inner_optimization

__all__ = ["AttackEvaluation"]


class AttackEvaluation(DatasetRunner):
    """Evaluate an attack over a data set: ``Trainer().test(AttackEvaluation(PGD("digits", eps=[...]), data))``.

    Every batch is attacked inside the test step (gradients on, under the trainer's device and
    precision). The metrics are torchmetrics ``Metric`` s, synced across processes at the end:

    - ``clean_accuracy``;
    - per ε: ``robust_accuracy``, ``success_rate`` (over the samples classified correctly when clean),
      ``norm_median`` and ``norm_mean`` of the successful perturbations (in the attack's norm), and
      ``sphere_label_change``: the mean fraction of ``sphere_points`` random points at
      ``sphere_factor·‖δ‖₂`` around the clean image whose label differs from the clean label;
    - per ε, ``<name>`` for each entry of ``metrics``: a torchmetrics ``Metric`` of your own, updated with
      ``metric.update(adversarial, clean, labels, predictions)`` (``adversarial``: ``(E, B, C, H, W)``, one
      row per ε; ``clean``: ``(B, C, H, W)``; ``labels``: ``(B,)``; ``predictions``: ``(E, B)``, the labels of
      the adversarial images), whose ``compute()`` gives one number per ε (``(E,)``) or one for all.

    They are logged at the end of the run (``robust_accuracy/eps=0.1``, ...) and kept in :attr:`results`
    (one row per ε); :class:`~inputopt.callbacks.attack.SaveAttackResults` writes them with example images. A
    sample's random start and sphere points depend only on ``(seed, its index in the data set)``, so
    several devices (which split the data) give the metrics of one.

    Args:
        attack: the attack (it holds the network).
        dataset: ``(image, label)`` samples, images in the attack's pixel space.
        batch_size: samples attacked together.
        num_workers: data-loading worker processes.
        sphere_factor: the radius of the random-sphere check, as a multiple of ``‖δ‖₂``.
        sphere_points: random points per sample (0: no sphere check).
        num_examples: clean/adversarial pairs kept for pictures (the first ones this process sees).
        metrics: more metrics, by the name they are reported under (in a config: ``name: {class_path: ...,
            init_args: ...}``); none by default, which keeps the metrics above only.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.attacks import PGD
        >>> from inputopt.data import Digits
        >>> runner = AttackEvaluation(PGD("digits", eps=[0.05, 0.1], alpha=0.02, steps=5), Digits(limit=32),
        ...                           sphere_points=0)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
        >>> [row["eps"] for row in runner.results], runner.results[0]["clean_accuracy"]
        ([0.05, 0.1], 1.0)
    """

    def __init__(self, attack: Attack, dataset: Dataset, batch_size: int = 64, num_workers: int = 0,
                 sphere_factor: float = 2.0, sphere_points: int = 100, num_examples: int = 8,
                 metrics: dict[str, Metric] | None = None) -> None:
        if not isinstance(attack, Attack):
            raise TypeError(f"attack must be an inputopt.attacks.Attack, got {type(attack).__name__}")
        check_not_empty(dataset)  # a run over nothing would end with no results and no error
        super().__init__(attack.network, dataset, batch_size, num_workers)
        if isinstance(sphere_points, bool) or not isinstance(sphere_points, int) or sphere_points < 0:
            raise ValueError(f"sphere_points must be an int >= 0, got {sphere_points!r}")
        if not isinstance(sphere_factor, (int, float)) or not 0 < sphere_factor < float("inf"):
            raise ValueError(f"sphere_factor must be a finite number > 0, got {sphere_factor!r}")
        self.attack = attack
        self.epsilons: list[float | None] = list(attack.epsilons) or [None]
        count = len(self.epsilons)
        self.sphere_factor = float(sphere_factor)
        self.sphere_points = sphere_points
        self.num_examples = num_examples
        self.clean_accuracy = MeanMetric()
        self.robust_accuracy = RobustAccuracy(count)
        self.success_rate = AttackSuccessRate(count)
        self.norms = PerturbationNorms(count)
        self.sphere = SphereLabelChange(count)
        builtin = ("eps", "norm", "clean_accuracy", "robust_accuracy", "success_rate", "norm_median", "norm_mean",
                   "sphere_label_change")
        self.extra_metrics = torch.nn.ModuleDict(check_metrics(metrics, "AttackEvaluation", reserved=builtin))
        self.results: list[dict[str, Any]] = []
        self.examples: dict[str, Tensor] = {}
        self.member_accuracy: list[dict[str, float]] = []  # an ensemble's per member and ε (AutoAttack)
        self._member_counts: Tensor | None = None
        self._members: list[str] = []

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self.attack.normalize is not None:
            self.attack.normalize._apply(fn, *args, **kwargs)
        return self

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        indices, images, labels = batch[0], batch[1], batch[2]
        check_data_images(indices, images)
        with inner_optimization():
            images, labels = images.clone().float(), labels.clone().long()
            results = self.attack.run(images, labels, keys=indices.tolist(), callbacks=[self.stop_callback])
        correct = results[0].clean_predictions == labels
        success = torch.stack([r.success for r in results]) & correct
        self.clean_accuracy.update(correct.float())
        self.robust_accuracy.update(torch.stack([r.predictions for r in results]), labels)
        self.success_rate.update(torch.stack([r.success for r in results]), mask=correct)
        self.norms.update(torch.stack([r.norms for r in results]), success)
        if self.sphere_points:
            self.sphere.update(torch.stack([self._sphere(r, ok, indices) for r, ok in zip(results, success)]))
        if len(self.extra_metrics):
            adversarial = torch.stack([r.images for r in results])
            predictions = torch.stack([r.predictions for r in results])
            for metric in self.extra_metrics.values():
                metric.update(adversarial, results[0].clean, labels, predictions)
        self._keep_examples(results, labels)
        self._count_members(results)

    def _count_members(self, results: list[AttackResult]) -> None:
        """An ensemble's (AutoAttack's) per-member report of this batch (``result.info["report"]``), added up:
        per ε, the samples still correctly classified clean and after each member."""
        reports = [r.info["report"] for r in results if "report" in r.info]
        if not reports:
            return
        counts = torch.tensor([[float((r.broken_by != -2).sum()),
                                *[float(((r.broken_by == -1) | (r.broken_by > i)).sum()) for i in range(len(r.members))],
                                float(r.broken_by.numel())] for r in reports], dtype=torch.float64)
        self._members = list(reports[0].members)
        self._member_counts = counts if self._member_counts is None else self._member_counts + counts

    def _member_accuracy(self) -> list[dict[str, float]]:
        """Per ε, ``{"clean": …, member: robust accuracy after it, …}`` over the whole data set (every
        process), for an ensemble with a per-member report; else an empty list."""
        counts = self._member_counts
        if self._trainer is not None and self.trainer.world_size > 1:  # every process takes part
            size = torch.tensor([0 if counts is None else counts.numel()], device=self.device)
            size = int(self.trainer.strategy.reduce(size.float(), reduce_op="max").item())
            if size == 0:
                return []
            local = counts if counts is not None else torch.zeros(size, dtype=torch.float64)
            counts = self.trainer.strategy.reduce(local.to(self.device).reshape(-1), reduce_op="sum").cpu()
            counts = counts.reshape(len(self.epsilons), -1)
        if counts is None or not self._members:
            return []
        return [{"clean": row[0].item() / max(row[-1].item(), 1),
                 **{name: row[1 + i].item() / max(row[-1].item(), 1) for i, name in enumerate(self._members)}}
                for row in counts]

    def _sphere(self, result: AttackResult, success: Tensor, indices: Tensor) -> Tensor:
        """Per sample, the fraction of random points at ``sphere_factor·‖δ‖₂`` that change the clean label
        (NaN where the attack failed); sample ``i``'s points come from ``(seed, index_i)``, so they do not
        depend on the batch, while the points of several samples share forward passes."""
        radii = self.sphere_factor * (result.images - result.clean).flatten(1).norm(dim=1)
        radii = torch.where(success, radii, torch.zeros_like(radii))
        generators = RowRandom(self.attack.seed).stream("sphere.points").generators(indices.tolist(),
                                                                                 device=result.clean.device)
        return sphere_label_changes(self.attack.predict, result.clean, radii, self.sphere_points, generators,
                                    result.clean_predictions, chunk_size=4 * self.batch_size,
                                    on_points=self.stop_if_asked).to(success.device)

    def _keep_examples(self, results: list[AttackResult], labels: Tensor) -> None:
        have = len(self.examples.get("clean", ()))
        take = max(0, self.num_examples - have)
        if take == 0:
            return
        new = {"clean": results[0].clean[:take], "labels": labels[:take],
               "clean_predictions": results[0].clean_predictions[:take],
               "adversarial": torch.stack([r.images[:take] for r in results], 1),  # (N, E, C, H, W)
               "predictions": torch.stack([r.predictions[:take] for r in results], 1)}
        for key, value in new.items():
            value = value.detach().cpu()
            self.examples[key] = torch.cat([self.examples[key], value]) if key in self.examples else value

    def on_test_epoch_start(self) -> None:
        self.results, self.examples = [], {}
        self._member_counts, self._members, self.member_accuracy = None, [], []

    def on_test_epoch_end(self) -> None:
        clean = self.clean_accuracy.compute().item()
        values = {"robust_accuracy": self.robust_accuracy.compute(), "success_rate": self.success_rate.compute()}
        norms = self.norms.compute()
        values["norm_median"], values["norm_mean"] = norms["median"], norms["mean"]
        if self.sphere_points:
            values["sphere_label_change"] = self.sphere.compute()
        for name, metric in self.extra_metrics.items():
            value = metric.compute()
            if not isinstance(value, Tensor) or value.numel() not in (1, len(self.epsilons)):
                raise ValueError(f"AttackEvaluation: metric {name!r} ({type(metric).__name__}) must compute one number "
                                 f"or one per ε ({len(self.epsilons)}), got {value!r}")
            values[name] = value.view(-1).expand(len(self.epsilons))
        self.results = []
        for i, eps in enumerate(self.epsilons):
            row = {"eps": eps, "norm": self.attack.norm, "clean_accuracy": clean}
            row.update({name: value.view(-1)[i].item() for name, value in values.items()})
            self.results.append(row)
            tag = "min" if eps is None else f"{eps:g}"
            for name in values:
                self.log(f"{name}/eps={tag}", row[name], sync_dist=False)
        self.member_accuracy = self._member_accuracy()
        self.log("clean_accuracy", clean, sync_dist=False)
        for metric in (self.clean_accuracy, self.robust_accuracy, self.success_rate, self.norms, self.sphere,
                       *self.extra_metrics.values()):
            metric.reset()
