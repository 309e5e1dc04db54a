"""The problem of a run, described once (:class:`~inputopt.problem.Problem`): built and checked once, rebuilt from
its plain-data config, and the loss path it builds equals the one built by hand."""

import pytest
import torch
from torch import nn

from inputopt.loss import LossPath
from inputopt.networks import NetworkSpec, build_network
from inputopt.objectives import ChannelSum, UnitActivation, UnitsObjective
from inputopt.params import FourierImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy
from inputopt.problem import Problem
from inputopt.transforms import Jitter


def test_components_from_configs_equal_objects():
    """A problem given configs equals one given the objects, and its config rebuilds it."""
    objects = Problem("digits", UnitActivation(None, unit=[3, 8]), [MultiScaleEdgeEnergy(0.3)], FourierImage(mean=0.5),
                      [Jitter(2)], seed=4)
    configs = Problem.of(objects.config())
    assert configs.config() == objects.config()
    assert isinstance(configs.objective, UnitActivation) and configs.objective.units == [3, 8]
    assert isinstance(configs.param, FourierImage) and configs.seed == 4 and len(configs.transforms) == 1


def test_path_equals_hand_built_loss_path():
    """The loss path of a problem scores like a LossPath built from the same parts."""
    problem = Problem(NetworkSpec("digits", mean=[0.5], std=[0.25]), UnitActivation(None, unit=[1, 2]),
                      [MultiScaleEdgeEnergy(0.1)])
    by_hand = LossPath(build_network("digits"), UnitActivation(None, unit=[1, 2]), [MultiScaleEdgeEnergy(0.1)],
                       normalize=NetworkSpec("digits", mean=[0.5], std=[0.25]).normalization())
    images = torch.rand(2, 1, 32, 32)
    targets = problem.path().default_targets(images)
    ours, theirs = problem.path().terms(images, targets), by_hand.terms(images, targets)
    assert set(ours) == set(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name])


def test_network_mapping_and_module():
    """``network:`` is a name, a mapping of NetworkSpec's fields, or a module (recorded, not rebuildable)."""
    spec = Problem({"model": "digits", "mean": [0.5], "std": [0.5]}).spec
    assert spec == NetworkSpec("digits", mean=[0.5], std=[0.5])
    module = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    problem = Problem(module, ChannelSum("0", channel=[0]))
    assert problem.network is module and problem.network_name is None
    record = problem.config()["network"]
    assert record["module"].endswith("Sequential") and len(record["sha256"]) == 64
    with pytest.raises(ValueError, match="was a module"):
        Problem.of(problem.config())


def test_new_param_is_a_fresh_copy():
    """Each run gets its own parameterization, so one problem serves several runs."""
    problem = Problem("digits", param=PixelImage(mean=0.5))
    first, second = problem.new_param(), problem.new_param()
    assert first is not second and first is not problem.param and first.config() == problem.param.config()
    assert Problem("digits").new_param(PixelImage(std=0.2)).config()["init_args"]["std"] == 0.2


@pytest.mark.parametrize("kwargs, match", [
    ({"objective": "UnitActivation"}, "objective must be an InputObjective"),
    ({"priors": MultiScaleEdgeEnergy()}, "priors must be a list"),
    ({"priors": [UnitActivation(None, unit=1)]}, "priors must be Prior"),
    ({"param": MultiScaleEdgeEnergy()}, "param must be an ImageParam"),
    ({"transforms": [MultiScaleEdgeEnergy()]}, "transforms must be Transform"),
    ({"seed": 1.5}, "seed must be an int"),
])
def test_exception(kwargs, match):
    """Bad parts are refused when the problem is built, naming what is valid."""
    with pytest.raises((TypeError, ValueError), match=match):
        Problem("digits", **kwargs)


def test_exception_config_and_require():
    with pytest.raises(ValueError, match="needs 'network'"):
        Problem.of({"objective": None, "netwrok": "digits"})
    with pytest.raises(ValueError, match="with 'model'"):
        Problem({"name": "digits"})
    with pytest.raises(ValueError, match="a sweep needs a UnitsObjective"):
        Problem("digits", NegativeCE()).require(UnitsObjective, "a sweep")


def NegativeCE():
    from inputopt.objectives import NegativeCrossEntropy

    return NegativeCrossEntropy()
