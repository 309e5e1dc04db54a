"""Receptive fields computed from the network: against fields computed by hand from the architectures of the
digits model and of EfficientNet-Lite0's first blocks, and global where the layer is global."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inputopt.functional.receptive_field import crop_box, receptive_field
from inputopt.layouts import declare_layouts
from inputopt.networks import build_network


def clipped(low: int, high: int, size: int) -> tuple[int, int]:
    return max(low, 0), min(high, size)


@pytest.mark.parametrize("layer, cells, side", [
    # features.0: 3x3 conv, padding 1 (32x32 map): pixels y-1..y+1
    ("features.0", lambda y: (y - 1, y + 2), 3),
    # features.3: + 2x2 max-pool (16x16): conv rows 2y, 2y+1 -> pixels 2y-1..2y+2
    ("features.3", lambda y: (2 * y - 1, 2 * y + 3), 4),
    # features.4: + 3x3 conv at stride 2: pool rows y-1..y+1 -> pixels 2y-3..2y+4 (8 pixels)
    ("features.4", lambda y: (2 * y - 3, 2 * y + 5), 8),
    # features.7: + pool, 3x3 conv at stride 4: features.4 rows 2y-2..2y+3 -> pixels 4y-7..4y+10 (18 pixels)
    ("features.7", lambda y: (4 * y - 7, 4 * y + 11), 18),
])
def test_digits_fields_equal_the_hand_computed_ones(layer, cells, side):
    field = receptive_field(build_network("digits"), layer, (1, 32, 32))
    height = field.boxes.shape[1]
    for y in range(height):
        for x in range(height):
            top, bottom = clipped(*cells(y), 32)
            left, right = clipped(*cells(x), 32)
            assert (field.boxes[:, y, x] == torch.tensor([top, left, bottom, right])).all(), (layer, y, x)
    assert field.size == (side, side) and not field.is_global


def test_digits_dense_layers_and_the_output_are_global():
    net = build_network("digits")
    for layer in ("classifier.1", ""):
        field = receptive_field(net, layer, (1, 32, 32))
        assert field.is_global and field.boxes.shape[0] in (64, 10)
        assert field.box(3) == (0, 0, 32, 32)


def test_efficientnet_lite0_first_blocks_equal_the_hand_computed_fields():
    """Lite0 pads as TensorFlow's 'same' (asymmetric for stride 2: the extra pixel at the bottom/right).
    At 96 px: stem 3x3/2 (pad 0|1), blocks.0 3x3 dw, blocks.1 3x3 dw/2 (pad 0|1) + 3x3 dw,
    blocks.2 5x5 dw/2 (pad 1|2) + 5x5 dw."""
    pytest.importorskip("timm")
    from inputopt.networks import NetworkSpec

    spec = NetworkSpec("efficientnet_lite0")
    net, normalize = spec.build(0), spec.normalization()
    stem = lambda y: (2 * y, 2 * y + 3)  # noqa: E731
    block0 = lambda y: (stem(y - 1)[0], stem(y + 1)[1])  # noqa: E731  3x3 dw, stride 1
    block1 = lambda y: (block0(2 * (y - 1))[0], block0(2 * (y + 1) + 2)[1])  # noqa: E731  3x3 dw/2 (pad 0), 3x3 dw
    block2 = lambda y: (block1(2 * (y - 2) - 1)[0], block1(2 * (y + 2) + 3)[1])  # noqa: E731  5x5 dw/2 (pad 1), 5x5
    for layer, cells, side in (("conv_stem", stem, 3), ("blocks.0", block0, 7), ("blocks.1", block1, 19),
                               ("blocks.2", block2, 67)):
        field = receptive_field(net, layer, (3, 96, 96), normalize, batch_size=48)
        size = field.boxes.shape[1]
        expected = torch.tensor([[*clipped(*cells(y), 96)] for y in range(size)])  # (h, 2): rows = columns
        boxes = field.boxes[0]
        assert (boxes[..., 0] == expected[:, 0].view(-1, 1)).all() and (boxes[..., 2] == expected[:, 1].view(-1, 1)).all()
        assert (boxes[..., 1] == expected[:, 0].view(1, -1)).all() and (boxes[..., 3] == expected[:, 1].view(1, -1)).all()
        assert field.size == (side, side), layer
        assert (field.boxes == field.boxes[:1]).all()  # every channel of a layer sees the same pixels


def test_zero_weights_dead_units_and_max_pooling_do_not_shrink_the_field():
    """A gradient probe would miss these paths: a zero weight, a ReLU6 saturated or a ReLU dead everywhere,
    a max-pool's argmax. The NaN probe reads the structure."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.ReLU6(), nn.MaxPool2d(3, stride=1, padding=1),
                        nn.Conv2d(1, 1, 3, padding=1))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(100.0)  # ReLU6 saturated: zero gradient everywhere
        net[3].weight.zero_()
    field = receptive_field(net, "3", (1, 16, 16))
    assert field.box(0, (8, 8)) == (5, 5, 12, 12) and field.size == (7, 7)


def test_branches_of_other_kernels_give_their_channels_their_own_fields():
    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.large = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 5, padding=2)
            self.out = nn.Identity()

        def forward(self, x):
            return self.out(torch.cat([self.small(x), self.large(x)], 1))

    field = receptive_field(TwoBranches(), "out", (1, 9, 9))
    assert field.box(0, (4, 4)) == (4, 4, 5, 5) and field.box(1, (4, 4)) == (2, 2, 7, 7)


def test_attention_is_global():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 8, 4, stride=4)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)
            self.mixed = nn.Identity()

        def forward(self, x):
            tokens = self.patch(x).flatten(2).transpose(1, 2)
            return self.mixed(self.attention(tokens, tokens, tokens)[0])

    net = declare_layouts(Tokens(), {"mixed": {"kind": "tokens", "patch": 4}})  # (B, N, D): declared, never guessed
    assert receptive_field(net, "patch", (3, 16, 16)).box(0, (1, 2)) == (4, 8, 8, 12)
    assert receptive_field(net, "mixed", (3, 16, 16)).is_global


def test_crop_box():
    image = torch.zeros(3, 20, 30)
    assert crop_box(image, (5, 5, 10, 10)) == (5, 5, 10, 10)
    assert crop_box(image, (5, 5, 10, 10), 9) == (3, 3, 12, 12)
    assert crop_box(image, (15, 25, 20, 30), 8) == (12, 22, 20, 30)  # shifted inside
    assert crop_box(image, (-1, -1, -1, -1), 8) == (0, 0, 20, 30)  # no field: the whole image


def test_exception():
    with pytest.raises(ValueError, match="image_shape"):
        receptive_field(nn.Identity(), "", (16, 16))
    with pytest.raises(ValueError, match="unknown layer"):
        receptive_field(nn.Sequential(nn.Identity()), "5", (1, 8, 8))
