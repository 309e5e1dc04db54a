"""Diversity and Alignment: against Lucent-style loops over pairs of rows, their groups, and what they do
to an optimization."""

from __future__ import annotations

import pytest
import torch

from inputopt import InputOptimization
from inputopt.capture import capture_activations
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.objectives import Alignment, ChannelSum, Diversity, Sum, UnitActivation
from inputopt.objectives.base import select_rows
from inputopt.params import PixelImage
from inputopt.problem import Problem


def _acts(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def gram_cosines(act: torch.Tensor) -> torch.Tensor:
    """(B, B) cosine similarity of the flattened Gram matrices, one pair at a time."""
    flat = act.reshape(act.shape[0], act.shape[1], -1)
    grams = [(f @ f.T).flatten() for f in flat]
    return torch.tensor([[(a @ b / (a.norm() * b.norm())).item() for b in grams] for a in grams], dtype=act.dtype)


def lucent_diversity(act: torch.Tensor) -> float:
    """Lucent's diversity value: −Σ_i Σ_{j≠i} cos(G_i, G_j) / B."""
    cos = gram_cosines(act)
    n = act.shape[0]
    return -sum(cos[i, j].item() for i in range(n) for j in range(n) if j != i) / n


def lucent_alignment(act: torch.Tensor, decay_ratio: float = 2.0) -> float:
    """Lucent's alignment penalty: Σ_{d=1..4} Σ_i mean((A_i − A_{i+d})²) / r^d."""
    n = act.shape[0]
    return sum(((act[i] - act[i + d]) ** 2).mean().item() / decay_ratio ** d
               for d in (1, 2, 3, 4) for i in range(n - d))


class TestDiversity:
    @pytest.mark.parametrize("shape", [(4, 3, 5, 5), (3, 6)])
    def test_matches_reference(self, shape):
        act = _acts(shape)
        cos = gram_cosines(act)
        n = shape[0]
        expected = torch.tensor([-sum(cos[i, j].item() for j in range(n) if j != i) / n for i in range(n)],
                                dtype=act.dtype)
        score = Diversity("a")({"a": act})
        torch.testing.assert_close(score, expected)
        assert score.sum().item() == pytest.approx(lucent_diversity(act))

    def test_groups_are_scored_separately(self):
        act = _acts((5, 3, 4, 4))
        groups = [2, 9, 2, 9, 2]
        score = Diversity("a", group=groups)({"a": act})
        for g in (2, 9):
            rows = [i for i, h in enumerate(groups) if h == g]
            torch.testing.assert_close(score[rows], Diversity("a")({"a": act[rows]}))
            assert score[rows].sum().item() == pytest.approx(lucent_diversity(act[rows]))

    def test_identical_images_score_minus_one_each_row_alone_zero(self):
        act = _acts((1, 3, 4, 4)).expand(3, -1, -1, -1)
        torch.testing.assert_close(Diversity("a")({"a": act}), torch.full((3,), -2 / 3, dtype=act.dtype))
        assert Diversity("a")({"a": act[:1]}).item() == 0.0

    def test_row_groups_and_rows(self):
        assert Diversity("a").couples_rows
        assert Diversity("a").row_groups(3) == [0, 0, 0]
        assert Diversity("a").num_rows is None
        objective = Diversity("a", group=[4, 4, 1])
        assert objective.num_rows == 3 and objective.row_groups(3) == [4, 4, 1]
        with pytest.raises(ValueError, match="Diversity has 3 groups, one per image, but the batch has 2 images"):
            objective({"a": torch.zeros(2, 3, 2, 2)})
        with pytest.raises(ValueError, match="group must be an int or a non-empty list of ints"):
            Diversity("a", group=["x"])

    def test_makes_the_gram_matrices_less_similar(self, tiny_net):
        """Four copies of one channel: with the diversity term their Gram matrices end up far less alike."""
        net = tiny_net.requires_grad_(False)

        def mean_similarity(objective) -> float:
            param = PixelImage(std=0.5).initialize((3, 32, 32), keys=[3] * 4)
            optimize(param, LossPath(net, objective), steps=20)
            cos = gram_cosines(capture_activations(net, param().detach(), ["features.4"])["features.4"])
            return ((cos.sum() - cos.diagonal().sum()) / 12).item()

        channel = ChannelSum("features.4", channel=[3] * 4)
        without = mean_similarity(channel)
        with_diversity = mean_similarity(channel + 1e3 * Diversity("features.4", group=[3] * 4))
        assert without > 0.99  # maximizing one channel alone draws the same pattern four times
        assert with_diversity < without - 0.3


class TestAlignment:
    @pytest.mark.parametrize("n", [2, 4, 7])
    def test_matches_lucent(self, n):
        act = _acts((n, 3, 4, 4))
        score = Alignment("a")({"a": act})
        assert score.sum().item() == pytest.approx(-lucent_alignment(act))
        # each pair counted half in each of its rows
        expected = torch.zeros(n, dtype=act.dtype)
        for i in range(n):
            for j in range(n):
                if 1 <= abs(i - j) <= 4:
                    expected[i] -= 0.5 * ((act[i] - act[j]) ** 2).mean() / 2.0 ** abs(i - j)
        torch.testing.assert_close(score, expected)

    def test_positions_are_data_not_row_order(self):
        act = _acts((4, 2, 3, 3))
        order = [3, 0, 2, 1]
        full = Alignment("a", decay_ratio=3.0)({"a": act})
        shuffled = Alignment("a", position=order, decay_ratio=3.0)({"a": act[order]})
        torch.testing.assert_close(shuffled, full[order])
        targets = Alignment("a", position=order).default_targets({"a": act})
        assert targets.tolist() == order
        assert torch.equal(select_rows(targets, [1, 3]), torch.tensor([0, 1]))

    def test_max_distance_and_groups(self):
        act = _acts((4, 5))
        objective = Alignment(None, position=[0, 1, 10, 12], max_distance=2)
        assert objective.row_groups(4) == [0, 0, 1, 1]
        score = objective({"": act})
        torch.testing.assert_close(score[:2], Alignment(None, max_distance=2)({"": act[:2]}))
        torch.testing.assert_close(score[2:], Alignment(None, position=[0, 2], max_distance=2)({"": act[2:]}))
        assert Alignment(None, position=[5, 0, 3], max_distance=2).row_groups(3) == [1, 0, 1]

    @pytest.mark.parametrize("kwargs, message", [
        (dict(decay_ratio=0), "decay_ratio must be a finite number > 0"),
        (dict(decay_ratio=float("inf")), "decay_ratio must be a finite number > 0"),
        (dict(max_distance=0), "max_distance must be an int >= 1"),
        (dict(position=[]), "position must be an int or a non-empty list of ints"),
    ])
    def test_exception_arguments(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            Alignment("a", **kwargs)

    def test_pulls_neighbouring_images_together(self, tiny_net):
        net = tiny_net.requires_grad_(False)

        def neighbour_distances(objective) -> torch.Tensor:
            param = PixelImage(std=0.5).initialize((3, 32, 32), keys=[0, 1, 2, 3])
            optimize(param, LossPath(net, objective), steps=20)
            act = capture_activations(net, param().detach(), ["features.4"])["features.4"].flatten(1)
            return (act[1:] - act[:-1]).pow(2).mean(1)

        interpolation = ChannelSum("features.4", channel=[1, 1, 5, 5])
        without = neighbour_distances(interpolation)
        aligned = neighbour_distances(interpolation + 100 * Alignment("features.4"))
        assert (aligned < 0.8 * without).all(), (without, aligned)


class TestCoupledInSums:
    def test_sum_couples_the_union_of_its_terms_groups(self):
        objective = (UnitActivation(None, unit=[1, 2, 3, 4, 5]) + Diversity(None, group=[0, 0, 1, 2, 2])
                     + Alignment(None, position=[0, 10, 20, 30, 31], max_distance=10))
        assert isinstance(objective, Sum) and objective.couples_rows
        groups = objective.row_groups(5)
        # diversity ties 0-1 and 3-4; alignment ties 0-1-2-3-4 in one chain of gaps of 10 or less
        assert len(set(groups)) == 1
        loose = UnitActivation(None, unit=1) + Diversity(None, group=[0, 0, 1, 2, 2])
        groups = loose.row_groups(5)
        assert groups[0] == groups[1] != groups[2] and groups[3] == groups[4] != groups[2] != groups[0]
        assert (UnitActivation(None, unit=1) - ChannelSum(None, channel=2)).row_groups(5) is None

    def test_scaled_sum_value(self):
        act = _acts((3, 4, 3, 3))
        objective = ChannelSum("a", channel=[0, 0, 1]) + 5.0 * Diversity("a", group=[0, 0, 1])
        expected = act[[0, 1, 2], [0, 0, 1]].sum((1, 2)) + 5.0 * Diversity("a", group=[0, 0, 1])({"a": act})
        torch.testing.assert_close(objective({"a": act}), expected)

    def test_a_fit_with_copies_of_one_unit(self, tiny_net, fast_trainer_kwargs):
        """InputOptimization holds every row on one process: copies of a unit, each from its own noise."""
        from lightning.pytorch import Trainer

        objective = ChannelSum("features.4", channel=[3, 3, 3]) + 1e3 * Diversity("features.4", group=[3, 3, 3])
        module = InputOptimization(Problem(tiny_net, objective), image_shape=(3, 32, 32))
        start = module.images()
        assert not torch.equal(start[0], start[1])  # the unit's occurrence is part of the seed
        assert module.row_keys == [3, 3, 3]
        assert module.image_names() == ["features.4-3+row-0", "features.4-3+row-1", "features.4-3+row-2"]
        Trainer(max_steps=3, **fast_trainer_kwargs).fit(module)
        assert not torch.equal(module.images(), start)


def test_digits_diversity_config_runs(tmp_path, monkeypatch):
    """configs/digits_diversity.yaml from the command line: 8 images, 4 copies of each of two channels."""
    from pathlib import Path

    from inputopt.commands.fit import cli

    config = Path(__file__).resolve().parents[2] / "configs" / "digits_diversity.yaml"
    monkeypatch.chdir(tmp_path)
    module = cli(["fit", "--config", str(config), "--trainer.max_steps", "3", "--trainer.enable_progress_bar",
                  "false", "--trainer.enable_model_summary", "false"]).model
    objective = module.objective
    assert isinstance(objective, Sum) and isinstance(objective.terms[1], Diversity)
    assert objective.couples_rows and len(set(objective.row_groups(8))) == 2
    assert module.row_keys == [5] * 4 + [12] * 4
    images = torch.load(tmp_path / "results" / "digits_diversity" / "run" / "input.pt")
    assert images.shape == (8, 1, 32, 32) and not torch.equal(images[0], images[1])
