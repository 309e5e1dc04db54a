"""Dataset examples of a transformer layer: a unit is a feature, its position a patch of the grid, its crop that patch."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer

from inputopt.capture import capture_activations
from inputopt.data import Digits
from inputopt.objectives import ChannelSum
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples
from inputopt.zoo.vit import DigitsViT


def test_examples_of_token_features_crop_around_the_patch():
    torch.manual_seed(0)
    net = DigitsViT(dim=16, depth=2, num_heads=2).eval()  # 4x4 patches of 32x32 digits: an 8x8 grid, 16 features
    data = Digits(limit=40)
    runner = DatasetExamples(Problem(net, ChannelSum("blocks.1", [0, 15])), data, k=2, crop_size=4)
    Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(runner, verbose=False)
    assert runner.map_shape == [8, 8] and runner.units == [0, 15]
    index, (row, col) = runner.results["indices"][1][0], runner.results["positions"][1][0]
    image = runner.dataset_image(index)
    tokens = capture_activations(net, image[None].float(), ["blocks.1"]).raw["blocks.1"][0, 1:, 15]
    assert int(tokens.argmax()) == row * 8 + col  # the best patch token of feature 15
    assert torch.equal(runner.example_images()[1, 0], image[:, 4 * row:4 * row + 4, 4 * col:4 * col + 4].float())
