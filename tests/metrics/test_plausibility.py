"""Plausibility: the distance to the nearest real photographs in a reference network's feature space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inputopt.functional.color import natural_photographs
from inputopt.functional.plausibility import plausibility_distance
from inputopt.metrics import Plausibility
from inputopt.params import FourierImage


def test_smoke_exact_against_numpy():
    g = torch.Generator().manual_seed(0)
    features, reference = torch.randn(5, 3, 2, generator=g), torch.randn(7, 3, 2, generator=g)
    f = features.flatten(1).numpy().astype(np.float64)
    r = reference.flatten(1).numpy().astype(np.float64)
    cosine = (f / np.linalg.norm(f, axis=1, keepdims=True)) @ (r / np.linalg.norm(r, axis=1, keepdims=True)).T
    for k in (1, 3):
        expected = 1 - np.sort(cosine, axis=1)[:, ::-1][:, :k].mean(1)
        torch.testing.assert_close(plausibility_distance(features, reference, k), torch.from_numpy(expected).float())


def test_invariants():
    g = torch.Generator().manual_seed(1)
    features, reference = torch.randn(4, 6, generator=g), torch.randn(9, 6, generator=g)
    d = plausibility_distance(features, reference)
    torch.testing.assert_close(plausibility_distance(3 * features, 0.5 * reference), d)  # scale of the features
    torch.testing.assert_close(plausibility_distance(features, reference[torch.randperm(9, generator=g)]), d)
    torch.testing.assert_close(plausibility_distance(features[[2, 0, 3, 1]], reference), d[[2, 0, 3, 1]])
    assert torch.allclose(plausibility_distance(reference[:3], reference), torch.zeros(3), atol=1e-6)  # a photo
    assert ((d >= 0) & (d <= 2)).all()
    assert (plausibility_distance(features, reference, k=4) >= d - 1e-6).all()  # more neighbours, no nearer


def test_exceptions():
    with pytest.raises(ValueError, match="same feature shape"):
        plausibility_distance(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 2\]"):
        plausibility_distance(torch.ones(2, 3), torch.ones(2, 3), k=3)
    with pytest.raises(ValueError, match="reference must be photographs"):
        Plausibility(nn.Flatten(), None, torch.ones(3, 4))
    with pytest.raises(ValueError, match="k must be an int"):
        Plausibility(nn.Flatten(), None, torch.ones(2, 1, 4, 4), k=0)


def test_metric_is_the_mean_of_the_functional_over_batches():
    g = torch.Generator().manual_seed(2)
    reference, images = torch.rand(6, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g)
    network = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
    torch.manual_seed(0)
    metric = Plausibility(network, None, reference, k=2)
    metric.update(images[:2])
    metric.update(images[2:])
    with torch.no_grad():
        expected = plausibility_distance(network(images), network(reference), k=2).mean()
    torch.testing.assert_close(metric.compute(), expected)


class OrientedEnergy(nn.Module):
    """A hand-built reference network: the share of spectral energy in 8 orientations x 3 frequency bands of
    the grey image (Hann-windowed, so the borders add no axis energy), the statistics that tell a
    photograph's texture from axis-aligned streaks."""

    def forward(self, x):
        grey = x.mean(1)
        h, w = grey.shape[-2:]
        window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
        energy = torch.fft.fft2((grey - grey.mean((-2, -1), keepdim=True)) * window).abs().square()
        fy, fx = torch.meshgrid(torch.fft.fftfreq(h), torch.fft.fftfreq(w), indexing="ij")
        radius, angle = (fy ** 2 + fx ** 2).sqrt(), torch.atan2(fy, fx) % math.pi
        orientation = (angle / math.pi * 8).long().clamp(max=7)
        band = torch.bucketize(radius, torch.tensor([0.05, 0.15, 0.3]))
        bins = (band.clamp(1, 3) - 1) * 8 + orientation
        valid = (radius > 0.02) & (radius <= 0.5)
        features = torch.stack([(energy * ((bins == b) & valid)).flatten(1).sum(1) for b in range(24)], 1)
        return (features / features.sum(1, keepdim=True)).sqrt()


@pytest.fixture(scope="module")
def photo_crops():
    crops = []
    for photo in natural_photographs():
        photo = F.interpolate(photo[None], size=(96, 96), mode="bilinear", antialias=True, align_corners=False)[0]
        crops += [photo[:, y:y + 64, x:x + 64] for y in (0, 32) for x in (0, 32)]
    return torch.stack(crops)


def test_ranks_streak_images_below_fourier_images(photo_crops):
    """The case transfer misses: MACO's colour streaks (energy on the frequency axes: horizontal and vertical
    stripes) against Fourier images with a natural 1/f spectrum. Both may fool a classifier; only the
    Fourier images are near photographs, and the streaks rank worse (a larger distance)."""
    g = torch.Generator().manual_seed(3)
    rows, columns = torch.randn(8, 3, 64, 1, generator=g), torch.randn(8, 3, 1, 64, generator=g)
    walks = rows.cumsum(2) / 8 + columns.cumsum(3) / 8  # horizontal plus vertical random walks
    streaks = torch.sigmoid(walks - walks.mean((2, 3), keepdim=True))  # colour streaks
    fourier = FourierImage(decorrelate=True, sigmoid=(0, 1), std=1.0).initialize((3, 64, 64), keys=range(8))()
    metric = Plausibility(OrientedEnergy(), None, photo_crops)
    metric.update(fourier.detach())
    fourier_distance = metric.compute()
    metric.reset()
    metric.update(streaks)
    streak_distance = metric.compute()
    assert streak_distance > 1.3 * fourier_distance, (streak_distance, fourier_distance)  # measured: 0.074, 0.047
