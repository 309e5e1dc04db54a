"""Fixtures of the attack tests: the shipped digits model and its held-out digits."""

from __future__ import annotations

import pytest
import torch

from inputopt.zoo import digits_cnn, load_digits_split


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    """The digits CNN in the channels-last memory format, the one our attacks run a CNN in on a CPU
    (:func:`~inputopt.networks.channels_last_on_cpu`): the peers get it too, so that an agreement test compares
    the algorithms with the same convolution arithmetic (in another format a gradient entry near 0 can round to the
    other sign, and a sign step differ by one step at that pixel)."""
    return digits_cnn("a").eval().to(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor]:
    """All held-out digits and their labels; a test module takes the first few."""
    return load_digits_split("test")
