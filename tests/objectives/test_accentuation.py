"""Feature accentuation (Hamblin et al. 2024) as the library builds it: a unit's objective plus FeatureMatch, started
from a real image (``init=``), from Python and from configs/digits_accentuation.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from inputopt import ChannelSum, FourierImage, InputOptimization, Jitter
from inputopt.capture import evaluate
from inputopt.objectives.inversion import FeatureMatch
from inputopt.problem import Problem
from inputopt.zoo import digits_cnn, load_digits_split

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_accentuation.yaml"
START = 228  # the held-out digit that drives channel 5 of features.4 hardest


def _accentuate(lam: float, steps: int = 40) -> tuple[InputOptimization, torch.Tensor]:
    start = load_digits_split("test")[0][START]
    a0 = evaluate(digits_cnn("a"), start[None], ["features.4"])["features.4"][0, 5].sum().item()
    objective = (1 / a0) * ChannelSum("features.4", channel=5) + lam * FeatureMatch("features.2")
    module = InputOptimization(Problem("digits", objective, param=FourierImage(decay_power=1.5, clamp=(0, 1)),
                                       transforms=[Jitter(1)]), init=start)
    Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module)
    return module, start


def _channel(images: torch.Tensor) -> float:
    return evaluate(digits_cnn("a"), images, ["features.4"])["features.4"][:, 5].amax((1, 2)).item()


def test_accentuation_raises_the_unit_and_stays_near_the_start():
    loose, start = _accentuate(lam=0.1)
    tight, _ = _accentuate(lam=10.0)
    features = evaluate(digits_cnn("a"), start[None], ["features.2"])["features.2"]
    assert torch.allclose(tight.targets[1], features)  # FeatureMatch's targets: the start's own features
    assert _channel(loose.images()) > _channel(start[None])  # the unit is raised
    distance = [(m.images() - start).norm().item() for m in (loose, tight)]
    assert distance[1] < distance[0]  # a larger lambda keeps the image closer to the start
    assert _channel(tight.images()) < _channel(loose.images())


def test_config_reaches_the_goal_and_its_checks_pass(tmp_path, monkeypatch):
    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    cli(["fit", "--config", str(CONFIG), "--trainer.enable_progress_bar", "false"])
    (row,) = json.loads((tmp_path / "results" / "digits_accentuation" / "run" / "checks.json").read_text())
    checks = {c["name"]: c for c in row["checks"]}
    assert row["unit"] == 5 and row["passed"], checks
    assert checks["strength"]["values"]["ratio"] >= 1  # at least the best natural digit
    assert checks["plausibility"]["values"]["distance"] <= 0.3


def test_init_from_held_out_digits():
    import pytest

    module = InputOptimization(Problem("digits", ChannelSum("features.4", channel=[1, 2])), init="digits:3,17")
    assert torch.equal(module.start, load_digits_split("test")[0][[3, 17]])
    with pytest.raises(ValueError, match="'digits:' and indices"):
        InputOptimization(Problem("digits", ChannelSum("features.4", channel=1)), init="digits:9999")
