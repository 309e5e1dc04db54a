"""Direction against explicit dot products and cosines, and an optimization that turns towards it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inputopt._config import instantiate
from inputopt.capture import capture_activations
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.objectives import Direction
from inputopt.objectives.base import select_rows
from inputopt.params import PixelImage


def _acts(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cos(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


class TestDirection:
    def test_position_cosine_and_dot(self):
        act, v = _acts((2, 3, 4, 5)), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        cos = Direction("a", v.tolist(), position=(1, 3))({"a": act})
        dot = Direction("a", v.tolist(), position=(1, 3), cosine=False)({"a": act})
        torch.testing.assert_close(cos, torch.tensor([_cos(act[i, :, 1, 3], v) for i in range(2)], dtype=act.dtype))
        torch.testing.assert_close(dot, torch.tensor([(act[i, :, 1, 3] @ v).item() for i in range(2)],
                                                     dtype=act.dtype))

    def test_whole_map_is_the_mean_over_positions(self):
        act, v = _acts((2, 3, 4, 5)), torch.tensor([0.3, 1.0, -1.0], dtype=torch.float64)
        cos = Direction("a", v.tolist())({"a": act})
        dot = Direction("a", v.tolist(), cosine=False)({"a": act})
        expected_cos = [sum(_cos(act[i, :, y, x], v) for y in range(4) for x in range(5)) / 20 for i in range(2)]
        expected_dot = [sum((act[i, :, y, x] @ v).item() for y in range(4) for x in range(5)) / 20 for i in range(2)]
        torch.testing.assert_close(cos, torch.tensor(expected_cos, dtype=act.dtype))
        torch.testing.assert_close(dot, torch.tensor(expected_dot, dtype=act.dtype))

    def test_one_vector_per_row(self):
        act = _acts((3, 4))
        vectors = _acts((3, 4), seed=1)
        objective = Direction(None, vectors.tolist())
        assert objective.num_rows == 3
        torch.testing.assert_close(objective({"": act}), F.cosine_similarity(act, vectors, dim=1))
        rows = [2, 0]  # a subset of rows keeps its own vectors
        targets = objective.default_targets({"": act})
        torch.testing.assert_close(objective({"": act[rows]}, select_rows(targets, rows)),
                                   F.cosine_similarity(act[rows], vectors[rows], dim=1))

    def test_dot_is_not_normalized_and_cosine_is_scale_free(self):
        act, v = _acts((2, 3)), [1.0, 2.0, 2.0]
        scaled = [3 * c for c in v]
        torch.testing.assert_close(Direction(None, scaled, cosine=False)({"": act}),
                                   3 * Direction(None, v, cosine=False)({"": act}))
        torch.testing.assert_close(Direction(None, scaled)({"": act}), Direction(None, v)({"": act}))

    def test_tensor_direction_is_stored_as_a_list(self):
        objective = Direction("features.4", torch.tensor([1.0, 0.0, 2.0]), position=[1, 2])
        config = objective.config()
        assert config["init_args"]["direction"] == [1.0, 0.0, 2.0]
        assert config["init_args"]["position"] == [1, 2]
        rebuilt = instantiate(config)
        act = _acts((2, 3, 4, 4))
        torch.testing.assert_close(rebuilt({"features.4": act}), objective({"features.4": act}))

    def test_composes_with_the_algebra(self):
        act = _acts((2, 3))
        a, b = Direction(None, [1.0, 0, 0]), Direction(None, [0, 1.0, 0], cosine=False)
        torch.testing.assert_close((a - 0.5 * b)({"": act}), a({"": act}) - 0.5 * b({"": act}))

    def test_optimizing_turns_the_activations_towards_the_direction(self, tiny_net):
        v = [1.0, -1.0, 0.0, 0.5, 0.0, 2.0, 0.0, -0.5]
        objective = Direction("features.4", v)
        path = LossPath(tiny_net.requires_grad_(False), objective)
        param = PixelImage().initialize((3, 32, 32), keys=[0, 1])
        before = path.terms(param(), None)["objective"]
        after = path.terms(optimize(param, path, steps=15).images, None)["objective"]
        assert (after > before + 0.2).all(), (before, after)
        # measured independently: the mean cosine over positions of the activation map
        act = capture_activations(tiny_net, param().detach(), ["features.4"])["features.4"]
        cos = F.cosine_similarity(act, torch.tensor(v).view(1, -1, 1, 1), dim=1).mean((1, 2))
        torch.testing.assert_close(cos, after)

    @pytest.mark.parametrize("direction, message", [
        ([], "one vector"), ([[1.0, 2.0], [3.0]], "direction must be a list of numbers"),
        ([0.0, 0.0], "a zero direction has no cosine"), ([1.0, float("nan")], "must be finite"),
        ([[[1.0]]], "one vector"),
    ])
    def test_exception_direction(self, direction, message):
        with pytest.raises(ValueError, match=message):
            Direction("a", direction)

    def test_exception_shapes(self):
        with pytest.raises(ValueError, match="the direction has 2 numbers, but layer 'a' has 3 channels"):
            Direction("a", [1.0, 2.0])({"a": torch.zeros(1, 3, 2, 2)})
        with pytest.raises(ValueError, match="Direction has 2 directions, one per image, but the batch has 3"):
            Direction("a", [[1.0], [2.0]])({"a": torch.zeros(3, 1)})
        with pytest.raises(ValueError, match=r"outside layer 'a''s 2x2 map"):
            Direction("a", [1.0], position=(2, 0))({"a": torch.zeros(1, 1, 2, 2)})
        with pytest.raises(ValueError, match="has no spatial map"):
            Direction("a", [1.0], position=(0, 0))({"a": torch.zeros(1, 1)})
