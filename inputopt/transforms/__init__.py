"""Robustness transforms for the loss forward: seeded per row, batched, differentiable."""

from inputopt.transforms.base import AffineTransform, Transform, Transforms
from inputopt.transforms.geometric import Jitter, Pad, RandomRotate, RandomScale

__all__ = ["AffineTransform", "Jitter", "Pad", "RandomRotate", "RandomScale", "Transform", "Transforms"]
