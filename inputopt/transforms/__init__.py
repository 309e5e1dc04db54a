"""Robustness transforms for the loss forward: seeded per row, batched, differentiable."""

from inputopt.transforms.base import AffineTransform, Transform, Transforms
from inputopt.transforms.geometric import Jitter, Pad, RandomRotate, RandomScale
from inputopt.transforms.insert import AddPerturbation, Insert, PastePatch

__all__ = ["AddPerturbation", "AffineTransform", "Insert", "Jitter", "Pad", "PastePatch", "RandomRotate", "RandomScale", "Transform", "Transforms"]
