"""Metrics as configuration: a metric of one's own, given to ``AttackEvaluation`` or ``QualityMetrics`` through
their ``metrics`` argument (in Python or in a YAML config), appears in the results with the right value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torchmetrics import Metric

from inputopt.attacks import PGD
from inputopt.callbacks.quality import QualityMetrics
from inputopt.commands.runners import attack_main
from inputopt.data import Digits
from inputopt.module import InputOptimization
from inputopt.objectives import UnitActivation
from inputopt.problem import Problem
from inputopt.runners.attack import AttackEvaluation

ROOT = Path(__file__).resolve().parents[2]
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


class MeanLinf(Metric):
    """Per ε, the mean L∞ norm of the perturbations (an attack metric of one's own)."""

    full_state_update = False

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = scale
        self.add_state("total", torch.zeros(0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, adversarial, clean, labels, predictions) -> None:
        norms = (adversarial - clean).flatten(2).abs().amax(2).double().sum(1)  # (E,)
        self.total = norms if self.total.numel() == 0 else self.total + norms
        self.count += labels.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.scale * self.total / self.count).float()


class Saturation(Metric):
    """The fraction of pixel values at 0 or 1 (the example of docs/extending.md)."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, images: torch.Tensor) -> None:
        self.total += ((images <= 0) | (images >= 1)).float().flatten(1).mean(1).double().sum()
        self.count += images.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()


def test_attack_metric_added_through_the_argument():
    data = Digits("test", limit=12)
    attack = PGD("digits", eps=[0.03, 0.08], alpha=0.02, steps=2)
    runner = AttackEvaluation(attack, data, batch_size=5, sphere_points=0, metrics={"mean_linf": MeanLinf(2.0)})
    Trainer(**QUIET).test(runner, verbose=False)
    images, labels = data.tensors
    results = attack.run(images, labels, keys=range(len(labels)))
    for row, result in zip(runner.results, results):
        expected = 2 * (result.images - result.clean).flatten(1).abs().amax(1).mean().item()
        assert row["mean_linf"] == pytest.approx(expected, rel=1e-5) and 0 < row["mean_linf"] <= 2 * row["eps"] + 1e-6
    assert list(runner.results[0])[-1] == "mean_linf"  # after the built-in columns, which stay as they were


def test_attack_metric_from_a_config(tmp_path):
    runner = attack_main(["--config", str(ROOT / "configs" / "digits_pgd.yaml"), "--model.dataset.init_args.limit", "6",
                          "--model.attack.init_args.steps", "1", "--model.attack.init_args.eps", "[0.05]",
                          "--model.sphere_points", "0", "--trainer.logger", "false", "--trainer.callbacks", "[]",
                          "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
                          "--model.metrics", json.dumps({"mean_linf": {"class_path": f"{__name__}.MeanLinf",
                                                                       "init_args": {"scale": 1.0}}})])
    assert 0 < runner.results[0]["mean_linf"] <= 0.05 + 1e-6


def test_quality_metric_added_through_the_argument(tmp_path):
    callback = QualityMetrics(tmp_path, metrics={"saturation": Saturation()})
    module = InputOptimization(Problem("digits", UnitActivation(None, unit=[0, 1])))
    Trainer(max_steps=2, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(module)
    images = module.images()
    expected = ((images <= 0) | (images >= 1)).float().mean().item()
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["saturation"] == pytest.approx(expected) == callback.values["saturation"]
    assert "high_frequency_energy" in written  # the built-in values stay


def test_bad_metrics_are_named():
    data = Digits("test", limit=2)
    with pytest.raises(ValueError, match="'robust_accuracy' is taken"):
        AttackEvaluation(PGD("digits", eps=0.1), data, metrics={"robust_accuracy": MeanLinf()})
    with pytest.raises(TypeError, match="'x' must be a torchmetrics Metric, got str"):
        QualityMetrics(metrics={"x": "Saturation"})
    with pytest.raises(ValueError, match="without '.'"):
        QualityMetrics(metrics={"a.b": Saturation()})
