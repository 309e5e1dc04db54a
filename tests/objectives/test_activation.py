"""UnitActivation and ChannelSum against manual indexing of the activations."""

from __future__ import annotations

import pytest
import torch

from inputopt.capture import capture_activations
from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.objectives import ChannelInteraction, ChannelSum, DeepDream, UnitActivation, UnitsObjective
from inputopt.objectives.base import select_rows
from inputopt.params import PixelImage


def _acts(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _start(net, objective, x):
    """The activations of the starting images, from which ``default_targets`` builds the targets."""
    return capture_activations(net, x, objective.layers)


class TestUnitActivation:
    def test_smoke(self):
        act = _acts((2, 4, 5, 5))
        out = UnitActivation("a", unit=1)({"a": act})
        assert out.shape == (2,)
        assert out.dtype == torch.float32

    def test_dtype(self):
        act = _acts((2, 4, 5, 5))
        assert UnitActivation("a", unit=1)({"a": act.double()}).dtype == torch.float64  # passes through
        out = UnitActivation("a", unit=1)({"a": act.bfloat16()})
        assert out.dtype == torch.float32  # half precision is cast
        assert torch.equal(out, act.bfloat16()[:, 1, 2, 2].float())

    @pytest.mark.parametrize("shape, centre", [((2, 4, 5, 5), (2, 2)), ((3, 6, 7, 10), (3, 5)),
                                               ((1, 2, 4, 1), (2, 0))])
    def test_centre(self, shape, centre):
        act = _acts(shape)
        out = UnitActivation("a", unit=1)({"a": act})
        torch.testing.assert_close(out, act[:, 1, centre[0], centre[1]], rtol=0, atol=0)

    def test_centre_on_network(self, tiny_net):
        # an odd, non-square input: features.4 gives a 3-D map 11 x 15, centre (5, 7)
        x = _acts((2, 3, 22, 30))
        objective = UnitActivation("features.4", unit=6)
        acts = capture_activations(tiny_net, x, objective.layers)
        expected = tiny_net.features[:5](x)[:, 6, 5, 7]
        torch.testing.assert_close(objective(acts), expected, rtol=0, atol=0)

    @pytest.mark.parametrize("position", [(0, 0), (4, 1), (2, 3)])
    def test_position(self, position):
        act = _acts((2, 4, 5, 5))
        out = UnitActivation("a", unit=3, position=position)({"a": act})
        torch.testing.assert_close(out, act[:, 3, position[0], position[1]], rtol=0, atol=0)

    def test_position_list(self):
        objective = UnitActivation("a", unit=0, position=[1, 2])
        assert objective.position == (1, 2)
        act = _acts((1, 1, 3, 3))
        assert objective({"a": act}).item() == act[0, 0, 1, 2].item()

    def test_linear_layer(self, tiny_net):
        x = _acts((3, 3, 32, 32))
        objective = UnitActivation("classifier.1", unit=11)
        acts = capture_activations(tiny_net, x, objective.layers)
        expected = tiny_net.classifier[:2](tiny_net.features(x).flatten(1))[:, 11]
        torch.testing.assert_close(objective(acts), expected, rtol=0, atol=0)

    def test_output_logit(self, tiny_net):
        x = _acts((2, 3, 32, 32))
        objective = UnitActivation(None, unit=7)
        torch.testing.assert_close(objective(capture_activations(tiny_net, x, objective.layers)),
                                   tiny_net(x)[:, 7], rtol=0, atol=0)

    def test_per_row_units(self):
        act = _acts((4, 6, 5, 7))
        units = [5, 0, 3, 3]
        out = UnitActivation("a", unit=units)({"a": act})
        expected = torch.stack([act[i, u, 2, 3] for i, u in enumerate(units)])
        torch.testing.assert_close(out, expected, rtol=0, atol=0)

    def test_per_row_units_linear(self):
        act = _acts((3, 10))
        out = UnitActivation("a", unit=[9, 0, 4])({"a": act})
        assert torch.equal(out, torch.stack([act[0, 9], act[1, 0], act[2, 4]]))

    def test_per_row_gradient(self, tiny_net):
        x = _acts((2, 3, 32, 32)).requires_grad_(True)
        objective = UnitActivation("features.4", unit=[1, 6])
        objective(capture_activations(tiny_net, x, objective.layers))[0].backward()
        manual = x.detach().clone().requires_grad_(True)
        tiny_net.features[:5](manual)[0, 1, 8, 8].backward()
        torch.testing.assert_close(x.grad, manual.grad, rtol=0, atol=0)
        assert x.grad[0].abs().sum() > 0

    def test_rows_and_keys(self):
        assert UnitActivation("a", unit=[3, 1, 3]).row_keys(3) == [3, 1, 3]
        assert UnitActivation("a", unit=[3, 1, 3]).num_rows == 3
        assert UnitActivation("a", unit=4).row_keys(2) == [4, 4]
        assert UnitActivation("a", unit=4).num_rows is None

    def test_row_names(self):
        assert UnitActivation("features.4", unit=[3, 1]).row_names(2) == ["features.4-3", "features.4-1"]
        assert UnitActivation(None, unit=7).row_names(2) == ["output-7", "output-7"]

    def test_default_targets(self):
        act = _acts((3, 8, 4, 4))
        targets = UnitActivation("a", unit=[5, 0, 7]).default_targets({"a": act})
        assert targets.dtype == torch.long
        assert targets.tolist() == [5, 0, 7]
        # a single unit is shared by every row
        assert UnitActivation("a", unit=2).default_targets({"a": act}).tolist() == [2, 2, 2]

    def test_default_targets_equal_call_without_targets(self):
        act = _acts((3, 8, 4, 4))
        objective = UnitActivation("a", unit=[5, 0, 7], position=(1, 3))
        assert torch.equal(objective({"a": act}), objective({"a": act}, objective.default_targets({"a": act})))

    def test_targets_given_replace_the_units(self):
        # targets are data: the units the caller passes are the ones scored, whatever the constructor said
        act = _acts((3, 6, 5, 5))
        out = UnitActivation("a", unit=0)({"a": act}, torch.tensor([4, 1, 5]))
        assert torch.equal(out, torch.stack([act[0, 4, 2, 2], act[1, 1, 2, 2], act[2, 5, 2, 2]]))

    def test_select_rows(self):
        act = _acts((4, 6, 5, 5))
        objective = UnitActivation("a", unit=[5, 0, 3, 2], position=(1, 4))
        targets = objective.default_targets({"a": act})
        full = objective({"a": act}, targets)
        rows = [3, 1]
        out = objective({"a": act[rows]}, select_rows(targets, rows))
        assert torch.equal(out, full[rows])
        assert torch.equal(out, torch.stack([act[3, 2, 1, 4], act[1, 0, 1, 4]]))

    def test_select_rows_on_network(self, tiny_net):
        x = _acts((4, 3, 32, 32))
        objective = UnitActivation("features.4", unit=[7, 2, 0, 5])
        targets = objective.default_targets(_start(tiny_net, objective, x))
        full = objective(capture_activations(tiny_net, x, objective.layers), targets)
        rows = [0, 2]
        out = objective(capture_activations(tiny_net, x[rows], objective.layers), select_rows(targets, rows))
        torch.testing.assert_close(out, full[rows])

    def test_repr(self):
        text = repr(UnitActivation("features.4", unit=[1, 2], position=(3, 4)))
        assert text == "UnitActivation(layer='features.4', unit=[1, 2], position=(3, 4))"

    @pytest.mark.parametrize("unit", [8, -1, [0, 9]])
    def test_exception_unit_out_of_range(self, unit):
        objective = UnitActivation("a", unit=unit)
        acts = {"a": torch.zeros(2, 8, 4, 4)}
        message = r"unit -?\d+ is out of range for layer 'a', which has 8 units: valid units are 0\.\.7"
        with pytest.raises(ValueError, match=message):
            objective.default_targets(acts)
        with pytest.raises(ValueError, match=message):  # a call without targets builds and checks them
            objective(acts)

    def test_exception_unit_out_of_range_on_network(self, tiny_net):
        objective = UnitActivation("features.4", unit=8)
        with pytest.raises(ValueError, match=r"valid units are 0\.\.7"):
            objective.default_targets(_start(tiny_net, objective, torch.zeros(1, 3, 32, 32)))

    def test_exception_linear_unit_out_of_range(self, tiny_net):
        objective = UnitActivation(None, unit=10)
        with pytest.raises(ValueError, match=r"unit 10 .* valid units are 0\.\.9"):
            objective.default_targets(_start(tiny_net, objective, torch.zeros(1, 3, 32, 32)))

    @pytest.mark.parametrize("position", [(16, 0), (0, 16), (-1, 3)])
    def test_exception_position_out_of_range(self, tiny_net, position):
        objective = UnitActivation("features.4", unit=0, position=position)
        with pytest.raises(ValueError, match=r"16x16 map: valid rows 0\.\.15, columns 0\.\.15"):
            objective.default_targets(_start(tiny_net, objective, torch.zeros(1, 3, 32, 32)))

    def test_valid_targets_pass_check(self, tiny_net):
        objective = UnitActivation("features.4", unit=[0, 7], position=(15, 15))
        targets = objective.default_targets(_start(tiny_net, objective, torch.zeros(2, 3, 32, 32)))  # no error
        assert targets.tolist() == [0, 7]

    def test_exception_units_length(self):
        objective = UnitActivation("a", unit=[1, 2, 3])
        acts = {"a": torch.zeros(2, 4, 3, 3)}
        with pytest.raises(ValueError, match="UnitActivation has 3 units, one per image, but the batch has 2 images"):
            objective.default_targets(acts)
        with pytest.raises(ValueError, match="3 units, one per image, but the batch has 2 images"):
            objective(acts)

    @pytest.mark.parametrize("unit", ["3", True, [], [1, "a"], [1, 2.0], 1.5, [0, True], (),
                                      None])
    def test_exception_unit_type(self, unit):
        with pytest.raises(ValueError, match="units must be an int, a non-empty list of ints or 'all'"):
            UnitActivation("a", unit=unit)

    @pytest.mark.parametrize("position", [(1,), (1, 2, 3), (1.0, 2), ("a", "b")])
    def test_exception_position_type(self, position):
        with pytest.raises(ValueError, match=r"position must be \(row, column\) ints"):
            UnitActivation("a", unit=0, position=position)

    def test_exception_rank(self):
        objective = UnitActivation("a", unit=0)
        with pytest.raises(ValueError, match=r"\(B, C\) or \(B, C, H, W\)"):
            objective.default_targets({"a": torch.zeros(2, 3, 5)})

    def test_exception_position_without_map(self):
        objective = UnitActivation("a", unit=0, position=(1, 2))
        with pytest.raises(ValueError, match=r"position=\(1, 2\) given, but layer 'a' has no spatial map"):
            objective.default_targets({"a": torch.zeros(2, 3)})


class TestChannelSum:
    def test_smoke(self):
        out = ChannelSum("a", channel=1)({"a": torch.ones(2, 4, 3, 3)})
        assert torch.equal(out, torch.full((2,), 9.0))

    def test_dtype(self):
        assert ChannelSum("a", channel=1)({"a": torch.ones(2, 4, 3, 3, dtype=torch.float64)}).dtype == torch.float64
        assert ChannelSum("a", channel=1)({"a": torch.ones(2, 4, 3, 3, dtype=torch.float16)}).dtype == torch.float32

    def test_equals_sum_of_map(self, tiny_net):
        x = _acts((3, 3, 32, 32))
        objective = ChannelSum("features.4", channel=5)
        out = objective(capture_activations(tiny_net, x, objective.layers))
        expected = tiny_net.features[:5](x)[:, 5].double().sum(dim=(1, 2)).float()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)

    def test_per_row_channels(self):
        act = _acts((3, 5, 4, 6))
        out = ChannelSum("a", channel=[4, 0, 4])({"a": act})
        expected = torch.stack([act[0, 4].sum(), act[1, 0].sum(), act[2, 4].sum()])
        torch.testing.assert_close(out, expected)

    def test_linear_layer_is_the_feature(self):
        act = _acts((2, 6))
        assert torch.equal(ChannelSum("a", channel=2)({"a": act}), act[:, 2])

    def test_default_targets(self):
        objective = ChannelSum("a", channel=[4, 0, 4])
        act = _acts((3, 5, 4, 6))
        targets = objective.default_targets({"a": act})
        assert targets.dtype == torch.long and targets.tolist() == [4, 0, 4]
        assert torch.equal(objective({"a": act}, targets), objective({"a": act}))

    def test_select_rows(self):
        act = _acts((3, 5, 4, 6))
        objective = ChannelSum("a", channel=[4, 0, 2])
        targets = objective.default_targets({"a": act})
        full = objective({"a": act}, targets)
        rows = [2, 0]
        out = objective({"a": act[rows]}, select_rows(targets, rows))
        assert torch.equal(out, full[rows])
        torch.testing.assert_close(out, torch.stack([act[2, 2].sum(), act[0, 4].sum()]))

    def test_row_names(self):
        assert ChannelSum("features.4", channel=[1, 2]).row_names(2) == ["features.4-1", "features.4-2"]

    def test_repr(self):
        assert repr(ChannelSum("features.4", channel=[1, 2])) == "ChannelSum(layer='features.4', channel=[1, 2])"

    def test_exception_channel_out_of_range(self, tiny_net):
        objective = ChannelSum("features.0", channel=6)
        acts = _start(tiny_net, objective, torch.zeros(1, 3, 32, 32))
        with pytest.raises(ValueError, match=r"channel 6 is out of range .* valid channels are 0\.\.5"):
            objective.default_targets(acts)
        with pytest.raises(ValueError, match=r"channel 6 is out of range .* valid channels are 0\.\.5"):
            objective(acts)

    def test_exception_channels_length(self):
        with pytest.raises(ValueError, match="2 channels, one per image, but the batch has 3 images"):
            ChannelSum("a", channel=[0, 1])({"a": torch.zeros(3, 4, 2, 2)})

    def test_exception_rank(self):
        with pytest.raises(ValueError, match=r"ChannelSum needs \(B, C, \.\.\.\)"):
            ChannelSum("a", channel=0).default_targets({"a": torch.zeros(3)})

    @pytest.mark.parametrize("channel", ["0", [], False, 1.0, [1, False]])
    def test_exception_channel_type(self, channel):
        with pytest.raises(ValueError, match="units must be an int"):
            ChannelSum("a", channel=channel)


class TestSelect:
    def test_select_flat(self):
        act = torch.arange(6.0).view(2, 3)
        assert UnitsObjective.select(act, torch.tensor([2, 0])).tolist() == [2.0, 3.0]

    def test_select_maps(self):
        act = _acts((3, 4, 2, 5))
        out = UnitsObjective.select(act, torch.tensor([3, 3, 0]))
        assert out.shape == (3, 2, 5)
        assert torch.equal(out, torch.stack([act[0, 3], act[1, 3], act[2, 0]]))


class TestAllUnits:
    def test_all_resolves_to_every_channel_and_stays_all_in_the_config(self):
        objective = ChannelSum("features.4", channel="all")
        assert not objective.resolved
        with pytest.raises(RuntimeError, match="does not know its layer's size yet"):
            objective.num_rows
        objective.resolve({"features.4": torch.zeros(1, 8, 4, 4)})
        assert objective.resolved and objective.units == list(range(8)) and objective.num_rows == 8
        assert objective.config()["init_args"]["channel"] == "all"
        act = torch.arange(8.0).view(1, 8, 1, 1).expand(8, 8, 2, 2)
        assert objective({"features.4": act}).tolist() == [4.0 * c for c in range(8)]
        assert objective.default_targets({"features.4": act}).tolist() == list(range(8))
        assert objective.row_keys(8) == list(range(8))

    def test_exception_default_targets_before_resolve(self):
        objective = UnitActivation("a", unit="all")
        with pytest.raises(RuntimeError, match=r"call resolve\(\)"):
            objective.default_targets({"a": torch.zeros(8, 8)})

    def test_rows_take_their_own_units(self):
        objective = UnitActivation("a", unit=[4, 2, 7])
        act = torch.arange(8.0).view(1, 8).expand(3, 8)
        targets = objective.default_targets({"a": act})
        assert objective({"a": act[[2, 0]]}, select_rows(targets, [2, 0])).tolist() == [7.0, 4.0]
        assert objective({"a": act}).tolist() == [4.0, 2.0, 7.0]  # the objective itself keeps all its units


class TestChannelInteraction:
    def test_matches_reference(self):
        act = _acts((3, 5, 4, 6)).double()
        first, second = [0, 4, 2], [1, 4, 0]
        expected = torch.tensor([sum(act[i, first[i], y, x] * act[i, second[i], y, x]
                                     for y in range(4) for x in range(6)).item() / 24 for i in range(3)],
                                dtype=torch.float64)
        torch.testing.assert_close(ChannelInteraction("a", first, second)({"a": act}), expected)

    def test_flat_layer_is_the_product(self):
        act = _acts((2, 7))
        out = ChannelInteraction("a", channel1=3, channel2=[5, 6])({"a": act})
        torch.testing.assert_close(out, torch.stack([act[0, 3] * act[0, 5], act[1, 3] * act[1, 6]]))

    def test_same_channel_twice_is_the_mean_square(self):
        act = _acts((2, 4, 3, 3))
        torch.testing.assert_close(ChannelInteraction("a", 2, 2)({"a": act}), act[:, 2].pow(2).mean((1, 2)))

    def test_targets_are_the_two_channels(self):
        objective = ChannelInteraction("a", channel1=[1, 2], channel2=3)
        assert objective.num_rows == 2
        assert objective.default_targets({"a": torch.zeros(2, 4, 2, 2)}).tolist() == [[1, 3], [2, 3]]

    def test_exception_channel_out_of_range(self):
        with pytest.raises(ValueError, match=r"channel2 9 is out of range for layer 'a', which has 4 channels: "
                                             r"valid channels are 0\.\.3"):
            ChannelInteraction("a", 0, 9)({"a": torch.zeros(1, 4, 2, 2)})

    def test_exception_lengths(self):
        with pytest.raises(ValueError, match="their lengths differ: 2 and 3"):
            ChannelInteraction("a", [0, 1], [1, 2, 3])
        with pytest.raises(ValueError, match="channel1 must be an int or a non-empty list of ints"):
            ChannelInteraction("a", "0", 1)

    def test_optimizing_raises_the_joint_activation(self, tiny_net):
        objective = ChannelInteraction("features.4", channel1=[1, 2], channel2=[4, 4])
        path = LossPath(tiny_net.requires_grad_(False), objective)
        param = PixelImage().initialize((3, 32, 32), keys=[0, 1])
        before = path.terms(param(), None)["objective"]
        after = path.terms(optimize(param, path, steps=10).images, None)["objective"]
        assert (after > before + 0.05).all()


class TestDeepDream:
    def test_matches_reference(self):
        act = _acts((2, 3, 4, 5)).double()
        expected = torch.tensor([sum(v ** 2 for v in act[i].flatten().tolist()) / 60 for i in range(2)],
                                dtype=torch.float64)
        torch.testing.assert_close(DeepDream("a")({"a": act}), expected)

    def test_mean_not_sum_over_the_map(self):
        small, large = torch.ones(1, 2, 3, 3), torch.ones(1, 2, 9, 9)
        assert DeepDream("a")({"a": small}).item() == DeepDream("a")({"a": large}).item() == 1.0

    def test_optimizing_raises_the_energy(self, tiny_net):
        path = LossPath(tiny_net.requires_grad_(False), DeepDream("features.4"))
        param = PixelImage().initialize((3, 32, 32), keys=[0, 1])
        before = path.terms(param(), None)["objective"]
        after = path.terms(optimize(param, path, steps=10).images, None)["objective"]
        assert (after > 2 * before).all()
