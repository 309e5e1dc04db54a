"""A network whose layer names are HTML: the atlas must show them as text, never run them."""

from collections import OrderedDict

import torch
from torch import nn

SCRIPT = "<script>"
IMG = "<img src=x onerror=alert(1)>"


def hostile_net() -> nn.Module:
    """Conv ``<script>`` (4 channels), ReLU ``<img src=x onerror=alert(1)>``, then a head of 3 classes."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        (SCRIPT, nn.Conv2d(1, 4, 3, padding=1)),
        (IMG, nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(2)),
        ("flat", nn.Flatten()),
        ('head"&', nn.Linear(16, 3)),
    ])).eval()


def class_names() -> list[str]:
    """The head's classes, named in HTML too."""
    return ["<b>bold</b>", "a & b", "\"quoted\""]
