"""Fixtures of the attack tests: the shipped digits model and its held-out digits."""

from __future__ import annotations

import pytest
import torch

from inputopt.zoo import digits_cnn, load_digits_split


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return digits_cnn("a").eval()


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    """All held-out digits and their labels; a test module takes the first few."""
    return load_digits_split("test")
