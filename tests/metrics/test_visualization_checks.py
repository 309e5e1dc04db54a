"""The visualization checks: a normal unit's picture passes, the manipulated network's unit fails, the table and
the errors."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from inputopt.data import Digits
from inputopt.engine import optimize
from inputopt.functional.random import RowRandom
from inputopt.loss import LossPath
from inputopt.metrics.visualization_checks import (
    CHECKS,
    checkerboard_trap,
    visualization_checks,
    visualization_checks_json,
    visualization_checks_table,
)
from inputopt.objectives import ChannelSum
from inputopt.params import FourierImage
from inputopt.transforms import Jitter, RandomScale, Transforms
from inputopt.zoo import digits_cnn

LAYER, UNITS = "features.4", [3, 5]


def _visualize(network, steps: int = 100, seed: int = 0):
    """The digits' Fourier method (configs/digits_fourier.yaml without its prior) on channels 3 and 5."""
    path = LossPath(network, ChannelSum(LAYER, channel=UNITS), [], Transforms([Jitter(2), RandomScale(0.9, 1.1),
                                                                              Jitter(1)]))
    param = FourierImage(decay_power=1.5, mean=0.5, std=0.01, clamp=(0, 1)).initialize((1, 32, 32), UNITS, seed)
    optimize(param, path, steps, partial(torch.optim.Adam, lr=0.05), path.default_targets(param()),
             RowRandom(seed).stream("start").seeds(UNITS))
    with torch.no_grad():
        return param().detach()


@pytest.fixture(scope="module")
def networks():
    base = digits_cnn("a")
    return base, checkerboard_trap(base, LAYER, channel=3), digits_cnn("b")


def _check(network, transfer, images, natural=None, **kwargs):
    return visualization_checks(network, LAYER, UNITS, images, Digits("test") if natural is None else natural,
                                transfer_network=transfer, plausibility_layer="classifier.2", **kwargs)


def test_the_trap_leaves_natural_images_alone(networks):
    base, trap, _ = networks
    digits = Digits("test").tensors[0]
    assert torch.equal(trap(digits).argmax(1), base(digits).argmax(1))
    assert (trap(digits) - base(digits)).abs().max() < 0.02
    board = ((torch.arange(32)[:, None] + torch.arange(32)) % 2).float().expand(1, 1, 32, 32)
    assert (trap(board) - base(board)).abs().max() > 1


def test_a_normal_unit_passes_and_the_trapped_unit_fails(networks):
    base, trap, independent = networks
    normal = _check(base, independent, _visualize(base))
    trapped = _check(trap, independent, _visualize(trap))
    assert normal[0].passed and normal[1].passed, visualization_checks_table(normal)
    assert not trapped[0].passed, visualization_checks_table(trapped)           # channel 3 carries the trap
    assert not trapped[0]["strength"].passed and trapped[0]["strength"].values["ratio"] > 4
    assert trapped[1].passed                                                   # channel 5 does not
    # the path check flags the trap: most of its picture's score does not arrive through the layer's input
    assert not trapped[0]["path"].passed and trapped[0]["path"].values["carried"] < 0.5
    assert normal[0]["path"].passed and normal[1]["path"].passed and trapped[1]["path"].passed
    assert abs(normal[0]["path"].values["carried"] - 1) < 0.05  # a convolution's score is all its input's, but its bias
    # the trap's picture drives its unit far harder than the normal picture does the normal unit
    assert trapped[0]["strength"].values["ratio"] > 2 * normal[0]["strength"].values["ratio"]


def test_real_digits_pass_the_picture_checks(networks):
    base, _, independent = networks
    digits = Digits("test").tensors[0]
    results = _check(base, independent, digits[:2], checks=["strength", "plausibility", "high frequency"])
    assert all(r.passed for row in results for r in row.results), visualization_checks_table(results)
    assert results[0]["plausibility"].values["distance"] < 1e-6  # a natural image is its own nearest neighbour


def test_carried_is_a_convolutions_score_less_its_bias():
    from inputopt.metrics.visualization_checks import _carried

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3)).eval()
    images, units = torch.rand(5, 1, 8, 8), [0, 2, 1, 1, 0]
    carried, scores = _carried(net, "2", images, units, None)
    maps = net(images)
    expected = torch.stack([maps[i, u].max() for i, u in enumerate(units)])
    assert torch.allclose(scores, expected, atol=1e-6)
    assert torch.allclose(carried, scores - net[2].bias[units].detach(), atol=1e-5)


def test_the_natural_images_are_summarized_once(networks):
    base, _, independent = networks
    natural = Digits("test").tensors[0][:100].clone()
    seen = []
    handle = base.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        images = natural[:2] * 0.5
        first = _check(base, independent, images, natural=natural)
        natural_forwards = sum(n for n in seen if n == 64 or n == 36)   # the natural images in chunks of 64
        seen.clear()
        second = _check(base, independent, images, natural=natural)
        assert natural_forwards == 100 and 100 not in seen and 64 not in seen and 36 not in seen
        assert visualization_checks_json(second) == visualization_checks_json(first)
        seen.clear()
        natural[0] = 1 - natural[0]                                           # changed in place: read again
        _check(base, independent, images, natural=natural)
        assert 64 in seen and 36 in seen
    finally:
        handle.remove()


def test_seeds_table_and_json(networks):
    base, _, _ = networks
    images = _visualize(base, steps=20)
    others = torch.stack([_visualize(base, steps=20, seed=1)])
    results = _check(base, None, images, seed_images=others)
    assert [r.name for r in results[0].results] == ["strength", "path", "plausibility", "high frequency", "seeds"]
    assert 0 <= results[0]["seeds"].values["similarity"] <= 1 and results[0]["seeds"].values["seeds"] == 2
    table = visualization_checks_table(results).splitlines()
    assert table[0] == "| unit | verdict | strength | path | plausibility | high frequency | seeds |"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| features.4-3", "| features.4-5"]
    record = visualization_checks_json(results)
    assert record[0]["name"] == "features.4-3" and record[0]["unit"] == 3
    assert {c["name"] for c in record[0]["checks"]} <= set(CHECKS)


def test_exceptions(networks):
    base, _, _ = networks
    images = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="one unit per image"):
        visualization_checks(base, LAYER, [3], images, Digits("test", limit=20))
    with pytest.raises(ValueError, match="unknown checks"):
        visualization_checks(base, LAYER, UNITS, images, Digits("test", limit=20), checks=["beauty"])
    with pytest.raises(ValueError, match="unknown thresholds"):
        visualization_checks(base, LAYER, UNITS, images, Digits("test", limit=20), thresholds={"beauty": 1.0})
    with pytest.raises(ValueError, match="needs seed_images"):
        visualization_checks(base, LAYER, UNITS, images, Digits("test", limit=20), checks=["seeds"])
    with pytest.raises(ValueError, match="visualizations' size"):
        visualization_checks(base, LAYER, UNITS, images, torch.rand(5, 1, 16, 16))
