"""The zoo's transformer, digits_vit: accurate on held-out digits, its layouts declared, its heads exposed."""

from __future__ import annotations

import torch

from inputopt.capture import capture_activations
from inputopt.layouts import Layout, declared_layouts
from inputopt.networks import build_network, default_image_shape
from inputopt.zoo.digits import load_digits_split


def test_digits_vit_is_accurate_on_held_out_digits():
    images, labels = load_digits_split("test")
    model = build_network("digits_vit")
    assert not model.training and default_image_shape("digits_vit") == (1, 32, 32)
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.97, accuracy  # 446/450 with the shipped weights


def test_digits_vit_declares_its_layouts():
    model = build_network("digits_vit")
    layouts = declared_layouts(model)
    assert layouts["blocks.3"] == Layout("tokens", special=1, patch=(4, 4))
    assert layouts["blocks.2.attn.heads"].heads == 4 and "head" not in layouts and "patch_embed" not in layouts
    acts = capture_activations(model, torch.zeros(2, 1, 32, 32), ["blocks.3", "blocks.3.attn.heads"])
    assert acts["blocks.3"].shape == (2, 64, 8, 8) and acts.raw["blocks.3"].shape == (2, 65, 64)
