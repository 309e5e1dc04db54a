"""Objective algebra: a + b, a - b, c * a, -a, sum([...]) build a Sum that scores, names and configures well."""

from __future__ import annotations

import pytest
import torch

from inputopt._config import instantiate
from inputopt.capture import capture_activations
from inputopt.objectives import ChannelSum, NegativeCrossEntropy, Sum, UnitActivation


def _acts(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"": torch.randn(2, 10, generator=g), "features.4": torch.randn(2, 8, 5, 5, generator=g)}


class TestAlgebra:
    def test_difference_equals_weighted_scores(self):
        a, b = UnitActivation(None, unit=3), ChannelSum("features.4", channel=[1, 6])
        acts = _acts()
        torch.testing.assert_close((a - 0.5 * b)(acts), a(acts) - 0.5 * b(acts))
        torch.testing.assert_close((2 * a + b / 4)(acts), 2 * a(acts) + 0.25 * b(acts))
        torch.testing.assert_close((-a)(acts), -a(acts))

    def test_nested_sums_are_flattened(self):
        a, b, c = (UnitActivation(None, unit=u) for u in (1, 2, 3))
        combined = 2 * (a - b) + c
        assert isinstance(combined, Sum)
        assert list(combined.terms) == [a, b, c] and combined.weights == [2.0, -2.0, 1.0]
        total = sum([a, b, c])
        assert list(total.terms) == [a, b, c] and total.weights == [1.0, 1.0, 1.0]
        torch.testing.assert_close(total(_acts()), a(_acts()) + b(_acts()) + c(_acts()))

    def test_exception_not_an_objective(self):
        a = UnitActivation(None, unit=1)
        with pytest.raises(TypeError):
            a + 1
        with pytest.raises(TypeError):
            a * "2"
        with pytest.raises(ValueError, match="non-empty list of objectives"):
            Sum([])
        with pytest.raises(ValueError, match="2 terms but 1 weights"):
            Sum([a, a], weights=[1.0])

    def test_exception_row_counts_disagree(self):
        objective = UnitActivation(None, unit=[1, 2]) + UnitActivation(None, unit=[1, 2, 3])
        with pytest.raises(ValueError, match=r"different numbers of images: \[2, 3\]"):
            objective.num_rows


class TestLayersTargetsNames:
    def test_reads_the_union_of_layers_and_stops_after_the_deepest(self, tiny_net):
        objective = ChannelSum("features.4", channel=1) - UnitActivation("features.0", unit=2)
        assert objective.layers == ("features.4", "features.0")
        ran = []
        handle = tiny_net.classifier.register_forward_hook(lambda *args: ran.append(True))
        try:
            acts = capture_activations(tiny_net, torch.randn(2, 3, 32, 32), objective.layers)
        finally:
            handle.remove()
        assert not ran  # the classifier, after both layers, never ran
        assert objective(acts).shape == (2,)

    def test_targets_are_one_entry_per_term(self, tiny_net):
        objective = NegativeCrossEntropy() + UnitActivation("features.4", unit=[5, 6])
        x = torch.randn(2, 3, 32, 32)
        acts = capture_activations(tiny_net, x, objective.layers)
        labels, units = objective.default_targets(acts)
        assert torch.equal(labels, tiny_net(x).argmax(1)) and units.tolist() == [5, 6]
        with pytest.raises(ValueError, match="tuple of 2 targets"):
            objective(acts, labels)

    def test_rows_are_named_after_their_units(self):
        objective = UnitActivation(None, unit=[3, 4]) - 0.5 * ChannelSum("features.4", channel=[0, 7])
        assert objective.row_keys(2) == [3, 4]
        assert objective.row_names(2) == ["output-3+features.4-0", "output-4+features.4-7"]
        assert objective.num_rows == 2
        assert (NegativeCrossEntropy() + NegativeCrossEntropy(target=1)).row_names(2) == ["row-0", "row-1"]

    def test_config_rebuilds_nested_terms(self):
        objective = UnitActivation(None, unit=3) - 0.5 * ChannelSum("features.4", channel=[1, 6])
        config = objective.config()
        assert config["class_path"] == "inputopt.objectives.combine.Sum"
        assert config["init_args"]["weights"] == [1.0, -0.5]
        assert config["init_args"]["terms"][1] == {"class_path": "inputopt.objectives.activation.ChannelSum",
                                                   "init_args": {"layer": "features.4", "channel": [1, 6]}}
        rebuilt = instantiate(config)
        torch.testing.assert_close(rebuilt(_acts()), objective(_acts()))
