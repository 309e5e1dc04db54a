"""``network: timm/<name>``: any timm model by name, its pretrained weights from the local Hugging Face cache only,
its input size and normalization from its pretrained config."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt import ChannelSum, InputOptimization, TokenActivation
from inputopt.networks import (NetworkSpec, WeightsUnavailableError, build_network, default_image_shape,
                               default_normalization)
from inputopt.problem import Problem

timm = pytest.importorskip("timm")
NAME = "timm/vit_tiny_patch16_224"
REPO = "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def test_unknown_timm_name_lists_the_closest():
    with pytest.raises(ValueError, match="unknown timm model 'vit_tinny_patch16_224'; closest: vit_tiny_patch16_224"):
        build_network("timm/vit_tinny_patch16_224")
    with pytest.raises(ValueError, match="'pretrained' .* or None, got 'IMAGENET1K_V1'"):
        build_network(NAME, weights="IMAGENET1K_V1")


def test_input_size_and_normalization_from_the_pretrained_config():
    assert default_image_shape(NAME) == (3, 224, 224)
    assert default_normalization(NAME) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert default_normalization("timm/resnet18")[0] == pytest.approx((0.485, 0.456, 0.406))
    assert NetworkSpec(NAME).normalization().std.flatten().tolist() == [0.5, 0.5, 0.5]
    assert NetworkSpec(NAME, mean=[0.0] * 3, std=[1.0] * 3).normalization().std.flatten().tolist() == [1.0] * 3


def test_pretrained_weights_read_from_the_hugging_face_cache_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(WeightsUnavailableError, match=rf"not in the Hugging Face cache {tmp_path / 'hub'}.*state_dict:"):
        build_network(NAME, weights="pretrained")
    from safetensors.torch import save_file

    torch.manual_seed(3)
    trained = timm.create_model(NAME[5:])  # stands for the downloaded weights: another random draw
    snapshot = tmp_path / "hub" / REPO / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(snapshot / "model.safetensors"))
    (tmp_path / "hub" / REPO / "refs").mkdir()
    (tmp_path / "hub" / REPO / "refs" / "main").write_text("0123abc")
    loaded = build_network(NAME, weights="pretrained")
    assert torch.equal(loaded.blocks[3].mlp.fc1.weight, trained.blocks[3].mlp.fc1.weight)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    # the offline alternative: the same file as state_dict
    other = build_network(NAME, state_dict=snapshot / "model.safetensors")
    assert torch.equal(other.head.weight, trained.head.weight)


def test_a_timm_vit_by_name_end_to_end():
    """One step at the model's own 224 px, on the class token of block 5 and on a neuron over its patches."""
    objective = TokenActivation("blocks.5", unit=[0, 7]) + ChannelSum("blocks.5", channel=[1, 2])
    module = InputOptimization(Problem(NAME, objective))
    assert module.images().shape == (2, 3, 224, 224) and module.normalize is not None
    Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False).fit(module)
    assert torch.isfinite(module.images()).all()
