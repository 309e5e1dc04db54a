"""The base of the dataset runners: the images of its data set, and its data split across processes."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from inputopt.runners.base import DatasetRunner


def test_dataset_image_takes_the_image_of_a_sample_or_the_sample():
    image = torch.rand(1, 4, 4)
    assert DatasetRunner(nn.Identity(), [(image, 3)]).dataset_image(0) is image
    assert DatasetRunner(nn.Identity(), [image]).dataset_image(0) is image
    with pytest.raises(ValueError, match=r"samples must start with a \(C, H, W\) image tensor, got Tensor \(4, 4\)"):
        DatasetRunner(nn.Identity(), [(torch.rand(4, 4), 3)]).dataset_image(0)


def test_exception_fewer_samples_than_processes():
    runner = DatasetRunner(nn.Identity(), [(torch.rand(1, 4, 4), 0)])
    runner.trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)  # not launched
    with pytest.raises(ValueError, match="1 samples for 2 processes: every process needs at least one sample"):
        runner.test_dataloader()
    runner.trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    assert len(runner.test_dataloader()) == 1
