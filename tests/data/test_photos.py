"""The real photographs: shapes, ranges, crops, the missing-package error. That EfficientNet-Lite0 and -Lite1
both give every photo its label is checked with the real networks in tests/zoo/test_efficientnet.py (slow)."""

from __future__ import annotations

import sys

import pytest
import torch

from inputopt.data.photos import PHOTOS, SOURCES, PhotoCrops, Photos, _grid, photo


def test_photos_are_224px_in_unit_range():
    data = Photos()
    assert len(data) >= 8 and data.images.shape == (len(data), 3, 224, 224)
    assert data.images.min() >= 0 and data.images.max() <= 1
    assert data.images.std() > 0.1  # real content, not a flat image
    image, label = data[data.names.index("chelsea")]
    assert torch.equal(image, photo("chelsea")) and label.item() == 285  # Egyptian cat


def test_crops():
    data = PhotoCrops(size=16)
    assert len(data) >= 400  # many natural images
    assert {data[i][1] for i in range(0, len(data), 7)} == set(range(len(SOURCES)))
    image, source = data[len(data) - 1]
    assert image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1
    flipped = PhotoCrops(size=16, scales=(0.5,), flips=True, sources=["coffee"])
    assert len(flipped) % 2 == 0 and torch.equal(flipped[0][0].flip(-1), flipped[1][0])
    # the grey photograph is repeated to 3 channels
    assert torch.equal(PhotoCrops(size=16, scales=(1.0,), sources=["camera"])[0][0][0],
                       PhotoCrops(size=16, scales=(1.0,), sources=["camera"])[0][0][1])  # grey: R = G


def test_grid_covers_the_length():
    assert _grid(10, 10) == [0]
    offsets = _grid(100, 40)
    assert offsets[0] == 0 and offsets[-1] == 60 and all(b - a <= 20 for a, b in zip(offsets, offsets[1:]))


def test_bad_names():
    with pytest.raises(ValueError, match=r"unknown photo 'dog'; valid: astronaut"):
        photo("dog")
    with pytest.raises(ValueError, match="unknown source"):
        PhotoCrops(sources=["dog"])
    with pytest.raises(ValueError, match="scales must be"):
        PhotoCrops(scales=(1.5,))


def test_missing_package_names_the_install_command(monkeypatch):
    from inputopt.data import photos

    photos.source_image.cache_clear()
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    try:
        with pytest.raises(ImportError, match=r"pip install 'inputopt\[photos\]'"):
            photo("coffee")
    finally:
        photos.source_image.cache_clear()


def test_every_photo_has_an_imagenet_label():
    from inputopt.zoo.efficientnet import imagenet_classes

    classes = imagenet_classes()
    assert all(spec.label in classes and spec.source in SOURCES for spec in PHOTOS.values())


def test_init_takes_a_packaged_photo():
    """``init="photo:NAME"`` (``--model.init photo:chelsea``) starts a fit from a packaged photo."""
    from torch import nn

    from inputopt import InputOptimization, UnitActivation
    from inputopt.problem import Problem

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    module = InputOptimization(Problem(net, UnitActivation(None, 0)), init="photo:chelsea")
    assert torch.equal(module.start[0], photo("chelsea"))
    with pytest.raises(ValueError, match="unknown photo 'dog'"):
        InputOptimization(Problem(net, UnitActivation(None, 0)), init="photo:dog")
