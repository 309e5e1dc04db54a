"""QualityMetrics at the end of a fit: the values written and logged equal the functional twins on the images."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger

from inputopt.callbacks.examples import SaveDatasetExamples
from inputopt.callbacks.quality import QualityMetrics
from inputopt.capture import capture_activations
from inputopt.data import Digits
from inputopt.metrics import diversity, high_frequency_energy
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import ChannelSum, UnitActivation
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def fit(objective, callback, tmp_path, logger=False):
    module = InputOptimization(Problem("digits", objective, [MultiScaleEdgeEnergy(0.3)]), image_shape=(1, 32, 32))
    Trainer(max_steps=4, logger=logger, callbacks=[callback], default_root_dir=tmp_path, **QUIET).fit(module)
    return module


def test_class_visualizations_scored_and_logged(tmp_path):
    callback = QualityMetrics(tmp_path / "out", transfer_networks=["digits_b"], diversity_layer="features.4")
    module = fit(UnitActivation(None, unit=[0, 1, 2, 3]), callback, tmp_path, CSVLogger(tmp_path, name="log"))
    images = module.images()
    with torch.no_grad():
        predicted = build_network("digits_b")(images).argmax(1)
        features = capture_activations(module.network, images, ["features.4"])["features.4"]
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["transfer_accuracy/digits_b"] == pytest.approx((predicted == torch.arange(4)).float().mean().item())
    assert written["high_frequency_energy"] == pytest.approx(high_frequency_energy(images).mean().item(), rel=1e-5)
    assert written["diversity"] == pytest.approx(diversity(features).item(), rel=1e-4)
    assert written["images"] == module.image_names() and written == {**callback.values, **written}
    with open(next((tmp_path / "log").rglob("metrics.csv"))) as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("quality/diversity")]
    assert float(logged[-1]["quality/diversity"]) == pytest.approx(written["diversity"], rel=1e-5)


def test_activation_ratio_from_an_examples_file(tmp_path):
    runner = DatasetExamples(Problem("digits", ChannelSum("features.4", [0, 5, 9])), Digits(limit=60), k=2)
    Trainer(logger=False, callbacks=[SaveDatasetExamples(tmp_path)], **QUIET).test(runner, verbose=False)
    callback = QualityMetrics(tmp_path, examples=tmp_path / "examples.json")
    module = fit(ChannelSum("features.4", channel=[5, 9]), callback, tmp_path)
    with torch.no_grad():
        acts = capture_activations(module.network, module.images(), ["features.4"])["features.4"]
    maxima = runner.dataset_max()
    expected = (acts[0, 5].max() / maxima[5] + acts[1, 9].max() / maxima[9]) / 2
    assert callback.values["activation_ratio"] == pytest.approx(expected.item(), rel=1e-5)


def test_bad_settings_fail_before_the_first_step(tmp_path):
    with pytest.raises(ValueError, match="cutoff"):
        QualityMetrics(high_frequency_cutoff=-1.0)
    with pytest.raises(ValueError, match="objective is on layer 'features.4'"):
        fit(ChannelSum("features.4", channel=[1, 2]), QualityMetrics(tmp_path, transfer_networks=["digits_b"]), tmp_path)
    with pytest.raises(FileNotFoundError, match="inputopt examples"):
        fit(ChannelSum("features.4", channel=[1]), QualityMetrics(tmp_path, examples=tmp_path / "none.json"), tmp_path)
    (tmp_path / "examples.json").write_text(json.dumps({"layer": "features.4", "units": [1, 2],
                                                        "values": [[-0.5, -0.7], [1.0, 0.5]]}))
    with pytest.raises(ValueError, match=r"must be > 0.*\{1: -0.5\}"):
        fit(ChannelSum("features.4", channel=[1, 2]), QualityMetrics(tmp_path, examples=tmp_path / "examples.json"),
            tmp_path)
    with pytest.raises(ValueError, match=r"no dataset maximum for units \[3\]"):
        fit(ChannelSum("features.4", channel=[2, 3]), QualityMetrics(tmp_path, examples=tmp_path / "examples.json"),
            tmp_path)
    with pytest.raises(ValueError, match="unknown layer"):
        fit(ChannelSum("features.4", channel=[1]), QualityMetrics(tmp_path, diversity_layer="features.44"), tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_added_to_a_config_from_the_command_line(tmp_path, monkeypatch):
    from pathlib import Path

    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
    module = cli(["fit", "--config", str(config), "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false",
                  "--trainer.callbacks+=QualityMetrics", "--trainer.callbacks.transfer_networks=[digits_b]"]).model
    written = json.loads((tmp_path / "results" / "digits" / "run" / "metrics.json").read_text())
    assert set(written) == {"high_frequency_energy", "transfer_accuracy/digits_b", "high_frequency_cutoff", "images"}
    assert written["high_frequency_energy"] == pytest.approx(high_frequency_energy(module.images()).mean().item(),
                                                             rel=1e-5)
