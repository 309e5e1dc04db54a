"""Attack metrics against direct computations, per epsilon, over several updates."""

from __future__ import annotations

import pytest
import torch

from inputopt.metrics import AttackSuccessRate, PerturbationNorms, RobustAccuracy, SphereLabelChange, robust_accuracy


def test_robust_accuracy_accumulates_like_one_batch():
    g = torch.Generator().manual_seed(0)
    predictions, labels = torch.randint(0, 3, (2, 50), generator=g), torch.randint(0, 3, (50,), generator=g)
    metric = RobustAccuracy(epsilons=[0.1, 0.2])
    for chunk in torch.arange(50).split(17):
        metric.update(predictions[:, chunk], labels[chunk])
    torch.testing.assert_close(metric.compute(), robust_accuracy(predictions, labels))
    torch.testing.assert_close(metric.compute(), (predictions == labels).float().mean(1))


def test_success_rate_counts_only_masked_samples():
    success = torch.tensor([[True, False, True, False]])
    mask = torch.tensor([True, True, False, False])
    metric = AttackSuccessRate()
    metric.update(success, mask)
    assert metric.compute().item() == 0.5


def test_norms_median_and_mean_over_successes_only():
    g = torch.Generator().manual_seed(1)
    norms, success = torch.rand(2, 30, generator=g), torch.rand(2, 30, generator=g) > 0.3
    metric = PerturbationNorms(2)
    metric.update(norms[:, :11], success[:, :11])
    metric.update(norms[:, 11:], success[:, 11:])
    result = metric.compute()
    for e in range(2):
        kept = norms[e][success[e]]
        assert result["median"][e].item() == pytest.approx(kept.median().item())
        assert result["mean"][e].item() == pytest.approx(kept.mean().item())


def test_sphere_label_change_skips_nan():
    metric = SphereLabelChange(2)
    metric.update(torch.tensor([[0.0, float("nan"), 0.3], [float("nan")] * 3]))
    values = metric.compute()
    assert values[0].item() == pytest.approx(0.15) and values[1].isnan()


@pytest.mark.parametrize("metric", [RobustAccuracy(2), PerturbationNorms(2), SphereLabelChange(2)])
def test_wrong_number_of_epsilons(metric):
    with pytest.raises(ValueError, match="one row per epsilon"):
        if isinstance(metric, RobustAccuracy):
            metric.update(torch.zeros(3, 4), torch.zeros(4))
        elif isinstance(metric, PerturbationNorms):
            metric.update(torch.zeros(3, 4), torch.ones(3, 4, dtype=torch.bool))
        else:
            metric.update(torch.zeros(3, 4))
