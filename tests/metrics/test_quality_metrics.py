"""Quality metrics against direct references: accumulated over several updates like one batch."""

from __future__ import annotations

import math

import pytest
import torch

from inputopt.capture import capture_activations
from inputopt.metrics import (
    ActivationRatio,
    Diversity,
    HighFrequencyEnergy,
    TransferAccuracy,
    diversity,
    high_frequency_energy,
    transfer_accuracy,
)
from tests.conftest import make_tiny_net


@pytest.fixture(scope="module")
def images():
    return torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_transfer_accuracy_per_network_against_argmax(images):
    nets = [make_tiny_net(0), make_tiny_net(1)]
    targets = torch.arange(12) % 10
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    metric = TransferAccuracy(nets, mean=mean, std=std)
    metric.update(images[:5], targets[:5])
    metric.update(images[5:], targets[5:])
    normalized = (images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = [(net(normalized).argmax(1) == targets).float().mean() for net in nets]
    torch.testing.assert_close(metric.compute(), torch.stack(expected))
    with torch.no_grad():
        logits = torch.stack([net(normalized) for net in nets])
    torch.testing.assert_close(transfer_accuracy(logits, targets), torch.stack(expected))
    # the targets the networks predict score 1
    predicted = logits[0].argmax(1)
    single = TransferAccuracy(nets[0], mean=mean, std=std)
    single.update(images, predicted)
    assert single.compute().item() == 1.0


def test_transfer_accuracy_keeps_networks_out_of_the_state(images):
    metric = TransferAccuracy(make_tiny_net())
    assert set(metric.state_dict()) == set() and not list(metric.parameters())


def test_activation_ratio_against_direct_maxima(images):
    net = make_tiny_net()
    with torch.no_grad():
        acts = capture_activations(net, images, ["features.4"])["features.4"]
    units = torch.tensor([0, 3, 3, 7] * 3)
    maxima = {0: 2.0, 3: 0.5, 7: 1.25}
    metric = ActivationRatio(net, "features.4", maxima)
    metric.update(images[:7], units[:7])
    metric.update(images[7:], units[7:])
    expected = torch.stack([acts[i, u].max() / maxima[int(u)] for i, u in enumerate(units)]).mean()
    torch.testing.assert_close(metric.compute(), expected)


def test_high_frequency_energy_of_references():
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    constant = torch.full((1, 16, 16), 0.7)
    checkerboard = ((y + x) % 2)[None]
    low = torch.cos(2 * math.pi * 2 / 16 * x)          # 0.125 cycles/pixel, below the 0.25 cutoff
    high = torch.cos(2 * math.pi * 6 / 16 * y)         # 0.375 cycles/pixel, above
    mixed = (3 * low + 2 * high)[None]                  # energy fraction 2² / (3² + 2²)
    values = high_frequency_energy(torch.stack([constant, checkerboard, low[None], high[None], mixed]), 0.25)
    torch.testing.assert_close(values, torch.tensor([0.0, 1.0, 0.0, 1.0, 4 / 13]))
    # colour channels add their energies
    two = torch.stack([low, 2 * high])[None]
    torch.testing.assert_close(high_frequency_energy(two), torch.tensor([4 / 5]))
    metric = HighFrequencyEnergy(0.25)
    metric.update(torch.stack([constant, checkerboard]))
    metric.update(mixed[None])
    torch.testing.assert_close(metric.compute(), torch.tensor((0 + 1 + 4 / 13) / 3))


def test_high_frequency_energy_against_numpy_fft(images):
    import numpy as np

    x = images[:3].numpy().astype(np.float64)
    x = x - x.mean((-2, -1), keepdims=True)
    energy = (np.abs(np.fft.fft2(x)) ** 2).sum(1)
    f = np.fft.fftfreq(32)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    expected = (energy * (radius > 0.1)).sum((1, 2)) / energy.sum((1, 2))
    torch.testing.assert_close(high_frequency_energy(images[:3], 0.1), torch.tensor(expected, dtype=torch.float32))


def test_diversity_state_equals_the_mean_over_pairs(images):
    net = make_tiny_net()
    with torch.no_grad():
        features = capture_activations(net, images, ["features.4"])["features.4"].flatten(1)
    metric = Diversity(net, "features.4")
    for chunk in images.split(5):
        metric.update(chunk)
    pairs = [1 - torch.cosine_similarity(features[i], features[j], 0) for i in range(12) for j in range(i + 1, 12)]
    expected = torch.stack(pairs).mean()
    torch.testing.assert_close(metric.compute(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(diversity(features), expected, atol=1e-5, rtol=1e-5)
    assert diversity(features[:1].expand(4, -1)).abs() < 1e-6


def test_exception(images):
    with pytest.raises(ValueError, match="cutoff"):
        HighFrequencyEnergy(cutoff=0.8)
    with pytest.raises(ValueError, match="at least 2"):
        diversity(torch.ones(1, 4))
    with pytest.raises(ValueError, match="no maximum for"):
        ActivationRatio(make_tiny_net(), "features.4", {0: 1.0}).update(images[:2], [0, 5])
    with pytest.raises(ValueError, match="> 0"):
        ActivationRatio(make_tiny_net(), "features.4", {0: 0.0})
    with pytest.raises(ValueError, match="mean and std"):
        TransferAccuracy(make_tiny_net(), mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="targets must be"):
        TransferAccuracy(make_tiny_net()).update(images[:2], torch.zeros(3, dtype=torch.long))
