"""Feature inversion: the FeatureMatch objective and the dataset runner that inverts every image."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt.data import Digits
from inputopt.loss import LossPath
from inputopt.networks import build_network
from inputopt.objectives import FeatureMatch
from inputopt.priors import TotalVariation
from inputopt.runners.inversion import FeatureInversion


def test_smoke_feature_match_scores():
    target = torch.randn(3, 4, 5, 5)
    l2, cosine = FeatureMatch("x"), FeatureMatch("x", metric="cosine")
    assert torch.allclose(l2({"x": target}, target), torch.zeros(3))
    assert torch.allclose(l2({"x": torch.zeros_like(target)}, target), -torch.ones(3))
    assert torch.allclose(cosine({"x": 3 * target}, target), torch.ones(3))
    assert torch.allclose(cosine({"x": -target}, target), -torch.ones(3))


def test_exception_feature_match():
    with pytest.raises(ValueError, match="metric must be"):
        FeatureMatch("x", metric="l1")
    with pytest.raises(ValueError, match="targets must come from the same layer"):
        FeatureMatch("x")({"x": torch.zeros(2, 4)}, torch.zeros(2, 5))


def test_inversion_matches_the_features_of_each_image_better_than_its_start():
    data = Digits("test", limit=3)
    quiet = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    runner = FeatureInversion("digits", "features.4", data, steps=30, priors=[TotalVariation(0.01)], batch_size=2)
    Trainer(**quiet).test(runner, verbose=False)
    assert sorted(runner.inversions) == [0, 1, 2]
    path = LossPath(build_network("digits"), FeatureMatch("features.4"))
    images = torch.stack([data[i][0] for i in range(3)])
    targets = path.default_targets(images)
    inverted = torch.stack([runner.inversions[i] for i in range(3)])
    start = torch.full_like(images, 0.5)
    after, before = (path.terms(x, targets)["objective"] for x in (inverted, start))
    assert (after > before).all() and (after > -0.5).all()


def test_exception_inversion_bad_layer():
    with pytest.raises((KeyError, ValueError), match="nolayer"):
        FeatureInversion("digits", "nolayer", Digits(limit=2))
