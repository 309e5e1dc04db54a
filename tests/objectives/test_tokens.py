"""Objectives speak the layout: on tokens and channels-last layers they index the feature dimension, a position is
a patch-grid position, and the transformer objectives read the class token and one head's output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inputopt.capture import capture_activations
from inputopt.layouts import declare_layouts
from inputopt.objectives import (AttentionHead, ChannelInteraction, ChannelSum, DeepDream, Direction, Diversity,
                                 TokenActivation, UnitActivation)
from tests.conftest import make_tiny_vit

LAYER = "blocks.1.mlp"  # (B, 1 + 16, 16): a class token, a 4x4 grid of patch tokens, 16 features


@pytest.fixture(scope="module")
def vit():
    return make_tiny_vit().requires_grad_(False)


@pytest.fixture(scope="module")
def acts(vit):
    return capture_activations(vit, torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                               [LAYER, "blocks.1.attn.heads"])


def test_tokens_are_seen_as_the_patch_grid(acts):
    raw = acts.raw[LAYER]
    assert raw.shape == (3, 17, 16) and acts[LAYER].shape == (3, 16, 4, 4)
    # feature 5 of the patch at grid (row 2, column 3) is token 1 + 2 * 4 + 3
    assert torch.equal(acts[LAYER][:, 5, 2, 3], raw[:, 1 + 2 * 4 + 3, 5])


def test_channel_sum_is_a_neuron_summed_over_the_patch_tokens(acts):
    raw = acts.raw[LAYER]
    score = ChannelSum(LAYER, channel=[0, 7, 15])(acts)
    expected = torch.stack([raw[i, 1:, c].sum() for i, c in enumerate([0, 7, 15])])
    torch.testing.assert_close(score, expected)
    objective = ChannelSum(LAYER, channel="all")
    objective.resolve(acts)
    assert objective.units == list(range(16))  # the sweep's "all" counts features, not tokens


def test_unit_activation_position_is_a_patch(acts):
    raw = acts.raw[LAYER]
    torch.testing.assert_close(UnitActivation(LAYER, unit=4, position=(1, 0))(acts), raw[:, 1 + 4, 4])
    torch.testing.assert_close(UnitActivation(LAYER, unit=4)(acts), raw[:, 1 + 2 * 4 + 2, 4])  # the centre
    with pytest.raises(ValueError, match="outside layer 'blocks.1.mlp'.s 4x4 map"):
        UnitActivation(LAYER, unit=4, position=(4, 0)).default_targets(acts)


def test_direction_interaction_deepdream_diversity_use_the_features(acts):
    patches = acts.raw[LAYER][:, 1:]  # (B, 16 patches, 16 features)
    v = torch.linspace(-1, 1, 16)
    torch.testing.assert_close(Direction(LAYER, v.tolist(), cosine=False)(acts), (patches @ v).mean(1))
    torch.testing.assert_close(ChannelInteraction(LAYER, channel1=1, channel2=2)(acts),
                               (patches[..., 1] * patches[..., 2]).mean(1))
    torch.testing.assert_close(DeepDream(LAYER)(acts), patches.pow(2).mean((1, 2)))
    grams = torch.nn.functional.normalize((patches.transpose(1, 2) @ patches).flatten(1), dim=1)  # (B, D*D)
    similarity = grams @ grams.T
    expected = -(similarity.sum(1) - similarity.diag()) / 3
    torch.testing.assert_close(Diversity(LAYER)(acts), expected)


def test_token_activation_reads_the_class_token(acts):
    raw = acts.raw[LAYER]
    torch.testing.assert_close(TokenActivation(LAYER, unit=[0, 3, 9])(acts), raw[[0, 1, 2], 0, [0, 3, 9]])
    torch.testing.assert_close(TokenActivation(LAYER, unit=2, token=16)(acts), raw[:, 16, 2])
    with pytest.raises(ValueError, match="token 17 is out of range .* 17 tokens"):
        TokenActivation(LAYER, unit=2, token=17).default_targets(acts)


def test_attention_head_is_one_heads_output(acts):
    raw = acts.raw["blocks.1.attn.heads"]  # two heads of 8 features side by side
    score = AttentionHead("blocks.1.attn.heads", head=[0, 1, 1])(acts)
    expected = torch.stack([raw[i, 1:, 8 * h:8 * (h + 1)].pow(2).sum(-1).mean() for i, h in enumerate([0, 1, 1])])
    torch.testing.assert_close(score, expected)
    objective = AttentionHead("blocks.1.attn.heads", head="all")
    objective.resolve(acts)
    assert objective.units == [0, 1]
    with pytest.raises(ValueError, match="head 2 is out of range .* 2 heads"):
        AttentionHead("blocks.1.attn.heads", head=2).default_targets(acts)


def test_token_objectives_refuse_a_layer_without_tokens(acts, vit):
    conv = capture_activations(vit, torch.zeros(1, 3, 32, 32), ["patch_embed"])
    with pytest.raises(ValueError, match="TokenActivation reads the tokens .* 'patch_embed' .* channels_first"):
        TokenActivation("patch_embed", unit=0)(conv)
    with pytest.raises(ValueError, match="without heads; timm's ViTs expose them"):
        AttentionHead(LAYER, head=0)(acts)


class ChannelsLast(nn.Module):
    """A convolution whose output is permuted to (B, H, W, C), like a Swin stage."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.last = nn.Identity()

    def forward(self, x):
        return self.last(self.conv(x).permute(0, 2, 3, 1))


def test_channels_last_indexes_the_channel_not_a_row():
    torch.manual_seed(0)
    net = ChannelsLast().eval()
    x = torch.randn(2, 3, 6, 5)
    declare_layouts(net, {"last": "channels_last"})
    acts = capture_activations(net, x, ["last"])
    conv = capture_activations(net, x, ["conv"])["conv"]
    torch.testing.assert_close(ChannelSum("last", channel=3)(acts), conv[:, 3].sum((1, 2)))
    torch.testing.assert_close(UnitActivation("last", unit=1, position=(5, 4))(acts), conv[:, 1, 5, 4])
