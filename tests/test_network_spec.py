"""The network described once: :class:`~inputopt.networks.NetworkSpec` holds the checks of (network, weights,
state_dict, mean, std), and every runner, attack and metric that takes a network goes through it."""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import PGD
from inputopt.metrics import TransferAccuracy
from inputopt.module import InputOptimization
from inputopt.networks import NetworkSpec, build_network
from inputopt.objectives import UnitActivation
from inputopt.problem import Problem
from inputopt.runners.sweep import FeatureSweep

# each constructor, with the flat network arguments it takes
TAKERS = {
    # a fit and a sweep take the network in their Problem: from a config mapping, or a NetworkSpec
    "InputOptimization": lambda network, **kw: InputOptimization({"network": {"model": network, **kw},
                                                                  "objective": UnitActivation(None, unit=0)}),
    "FeatureSweep": lambda network, **kw: FeatureSweep(Problem(NetworkSpec(network, **kw),
                                                               UnitActivation(None, unit=0))),
    "Attack": lambda network, **kw: PGD(network, eps=0.1, **kw),
    "TransferAccuracy": lambda network, weights=None, state_dict=None, **kw: TransferAccuracy(network, **kw),
}


@pytest.mark.parametrize("name", TAKERS)
def test_every_taker_checks_the_network_alike(name):
    make = TAKERS[name]
    with pytest.raises(ValueError, match="give both mean and std for input normalization, or neither"):
        make(network="digits", mean=[0.5])
    with pytest.raises(ValueError, match="mean and std need one finite value per channel and std > 0"):
        make(network="digits", mean=[0.5], std=[0.0])
    with pytest.raises(TypeError, match="the network must be an nn.Module or a network name, got int"):
        make(network=3)
    if name != "TransferAccuracy":  # it takes no weights
        with pytest.raises(ValueError, match="weights and state_dict apply to a network given by name"):
            make(network=build_network("digits"), weights="DEFAULT")


def test_spec_builds_the_network_and_its_normalization():
    spec = NetworkSpec("digits", mean=[0.5], std=[0.25])
    assert spec.name == "digits" and spec.mean == (0.5,) and NetworkSpec(build_network("digits")).name is None
    network, normalize = spec.build(), spec.normalization()
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    assert torch.equal(normalize(torch.ones(1, 1, 2, 2)), torch.full((1, 1, 2, 2), 2.0))
    assert NetworkSpec("digits").normalization() is None
    module = torch.nn.Linear(2, 2)
    assert NetworkSpec(module).build(seed=None) is module  # an attack attacks the module it was given
