"""Layouts are known, never guessed: declared per family, overridable per layer, refused when unknown; the capture
views every layer channels first; a network's tuple/dict/dataclass output is picked by name."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torchvision
from lightning.pytorch import Trainer
from torch import nn

from inputopt import ChannelSum, InputOptimization
from inputopt.capture import capture_activations
from inputopt.layouts import Layout, LayoutError, declare_layouts, declared_layouts, to_channels_first
from inputopt.networks import NetworkSpec
from inputopt.problem import Problem
from tests.conftest import make_tiny_vit

QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)


def tiny_torchvision_vit() -> nn.Module:
    """torchvision's VisionTransformer class at 32 px (patches of 8: a 4x4 grid), standing in for vit_b_16."""
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(32, 8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                                num_classes=10).eval()


def test_layout_checks_its_fields():
    assert Layout.of({"kind": "tokens", "special": 1, "grid": [14, 14]}) == Layout("tokens", 1, (14, 14))
    with pytest.raises(ValueError, match="kind must be one of channels_first, channels_last, tokens"):
        Layout.of("tokns")
    with pytest.raises(ValueError, match="unknown layout field"):
        Layout.of({"kind": "tokens", "specials": 1})
    with pytest.raises(ValueError, match="a channels_last layout takes none"):
        Layout("channels_last", special=1)


def test_torchvision_families_are_declared():
    vit = declared_layouts(tiny_torchvision_vit())
    assert vit["encoder.layers.encoder_layer_1.mlp.3"] == Layout("tokens", special=1, patch=(8, 8))
    assert vit["conv_proj"].kind == "channels_first" and "heads.head" not in vit
    swin = declared_layouts(torchvision.models.swin_t())
    assert swin["features.0.0"].kind == "channels_first"  # the patch convolution, before its Permute
    assert {swin["features.0.2"].kind, swin["features.3.1.mlp"].kind, swin["norm"].kind} == {"channels_last"}
    convnext = declared_layouts(torchvision.models.convnext_tiny())
    assert convnext["features.1.0.block.3"].kind == "channels_last"  # the MLP between the two Permutes
    assert "features.1.0.block.0" not in convnext and "features.1.0" not in convnext  # channels first


def test_timm_families_are_declared():
    timm = pytest.importorskip("timm")
    vit = declared_layouts(timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, depth=2))
    assert vit["blocks.1.mlp.fc2"] == Layout("tokens", special=2, patch=(16, 16))  # class + distillation tokens
    assert vit["blocks.1.attn.norm"].heads == 3 and vit["blocks.0.attn.q_norm"].kind == "none"
    convnext = declared_layouts(timm.create_model("convnext_tiny"))
    assert convnext["stages.0.blocks.0.mlp.fc1"].kind == "channels_last"  # run after the block's permute
    assert "stages.0.blocks.0.conv_dw" not in convnext
    assert declared_layouts(timm.create_model("convnext_atto")) == {}  # its MLP is convolutional: channels first


def test_capture_views_tokens_and_channels_last_channels_first():
    net = tiny_torchvision_vit()
    x = torch.randn(2, 3, 32, 32)
    acts = capture_activations(net, x, ["encoder.layers.encoder_layer_1", "conv_proj"])
    raw = acts.raw["encoder.layers.encoder_layer_1"]
    assert raw.shape == (2, 17, 16) and acts["encoder.layers.encoder_layer_1"].shape == (2, 16, 4, 4)
    assert torch.equal(acts["encoder.layers.encoder_layer_1"][:, :, 1, 2], raw[:, 1 + 4 + 2])
    swin = torchvision.models.swin_t().eval()
    acts = capture_activations(swin, torch.randn(1, 3, 64, 64), ["features.1", "features.0.0"])
    assert acts.raw["features.1"].shape == (1, 16, 16, 96) and acts["features.1"].shape == (1, 96, 16, 16)


def test_an_undeclared_non_feature_map_is_refused_naming_the_override():
    net = nn.Sequential(nn.Flatten(2), nn.Linear(16, 8))  # (B, C, 16) -> (B, C, 8): what is dimension 1?
    with pytest.raises(LayoutError, match=r"layer '1' gives \(2, 3, 8\), and its layout is unknown.*layouts=\{'1': "
                                          r"\{'kind': 'tokens'.*declare_layouts"):
        capture_activations(net, torch.zeros(2, 3, 4, 4), ["1"])
    declare_layouts(net, {"1": {"kind": "tokens", "special": 1, "grid": [1, 2]}})  # 3 tokens of 8 features
    assert capture_activations(net, torch.zeros(2, 3, 4, 4), ["1"])["1"].shape == (2, 8, 1, 2)
    with pytest.raises(LayoutError, match="2x4 patch grid, but the layer gives 3 patch tokens"):
        to_channels_first(torch.zeros(1, 3, 8), Layout("tokens", grid=(2, 4)), "x")


def test_the_override_wins_and_travels_in_a_config(tmp_path):
    """NetworkSpec(layouts=...) (``layouts:`` of a run in YAML) declares a layer of a network without a family."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Identity())
    with pytest.raises(ValueError, match="unknown layout field"):
        NetworkSpec(net, layouts={"1": {"knd": "tokens"}})
    module = InputOptimization(Problem(NetworkSpec(net, layouts={"1": "channels_first"}),
                                       ChannelSum("1", channel=[0, 3])), image_shape=(3, 8, 8))
    assert module.hparams["problem"]["network"]["layouts"] == {"1": "channels_first"}
    assert declared_layouts(net)["1"] == Layout()
    vit = make_tiny_vit()
    declare_layouts(vit, {"blocks.0": {"kind": "tokens", "special": 1, "grid": [4, 4]}})
    assert declared_layouts(vit)["blocks.0"].grid == (4, 4) and declared_layouts(vit)["blocks.1"].grid is None


@dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor


class ReturnsMany(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        return {"tuple": (x, logits), "dict": {"logits": logits}, "dataclass": Output(logits, x)}[self.kind]


@pytest.mark.parametrize("kind, output", [("tuple", 1), ("dict", "logits"), ("dataclass", "logits")])
def test_a_tuple_dict_or_dataclass_output_is_picked_by_name(kind, output):
    net = ReturnsMany(kind)
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(TypeError, match="name the output to use"):
        capture_activations(NetworkSpec(ReturnsMany(kind)).build(), x, [""])
    built = NetworkSpec(net, output=output).build()
    torch.testing.assert_close(capture_activations(built, x, [""])[""], net.fc(x.flatten(1)))
    with pytest.raises(ValueError, match="without the output 'scores'"):
        capture_activations(NetworkSpec(ReturnsMany("dict"), output="scores").build(), x, [""])


def test_a_visualization_on_a_torchvision_vit_targets_a_feature_over_the_patch_tokens():
    """The issue's example, on the tiny torchvision ViT: "channel" 0 and 1 are features 0 and 1 summed over
    the patch tokens (not token 0, the class token); the fit raises them."""
    net = tiny_torchvision_vit()
    layer = "encoder.layers.encoder_layer_1.mlp.3"
    module = InputOptimization(Problem(net, ChannelSum(layer, channel=[0, 1]), seed=0), image_shape=(3, 32, 32))
    before = module.objective(capture_activations(net, module.images(), [layer]), module.targets)
    Trainer(max_steps=5, **QUIET).fit(module)
    acts = capture_activations(net, module.images(), [layer])
    after = module.objective(acts, module.targets)
    torch.testing.assert_close(after, acts.raw[layer][[0, 1], 1:, [0, 1]].sum(1))
    assert (after > before).all()


@pytest.mark.slow
@pytest.mark.parametrize("name, size, layer", [("vit_b_16", 224, "encoder.layers.encoder_layer_5"),
                                               ("swin_t", 64, "features.3"), ("convnext_tiny", 64, "features.3.0.block.4")])
def test_torchvision_transformers_by_name_offline(name, size, layer):
    module = InputOptimization(Problem(name, ChannelSum(layer, channel=[0, 1])), image_shape=(3, size, size))
    Trainer(max_steps=1, **QUIET).fit(module)
    assert torch.isfinite(module.images()).all()


def test_layouts_and_token_objectives_from_a_config(tmp_path, monkeypatch):
    """configs/digits_vit.yaml with a TokenActivation and a `layouts:` override from the command line: plain
    data that parses, reaches the network and is kept in the hyperparameters."""
    from pathlib import Path

    from inputopt.commands.fit import cli
    from inputopt.objectives import TokenActivation

    config = Path(__file__).resolve().parents[1] / "configs" / "digits_vit.yaml"
    monkeypatch.chdir(tmp_path)
    module = cli(["fit", "--config", str(config), "--trainer.max_steps", "2", "--trainer.logger", "false",
                  "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
                  "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
                  "--model.problem.objective", "TokenActivation",
                  "--model.problem.objective.init_args.layer", "blocks.3", "--model.problem.objective.init_args.unit",
                  "[0, 5]", "--model.problem.network",
                  "{model: digits_vit, layouts: {blocks.3: {kind: tokens, special: 1, grid: [8, 8]}}}"]).model
    assert isinstance(module.objective, TokenActivation) and module.images().shape == (2, 1, 32, 32)
    layouts = module.hparams["problem"]["network"]["layouts"]
    assert layouts == {"blocks.3": {"kind": "tokens", "special": 1, "grid": [8, 8]}}
    assert declared_layouts(module.network)["blocks.3"] == Layout("tokens", special=1, grid=(8, 8))


def test_the_atlas_takes_a_transformer_layer(tmp_path):
    """A block of digits_vit is a layer of 64 features on the 8x8 patch grid; its units are visualized as features
    summed over the patch tokens (ChannelSum), their examples cropped around a patch."""
    from inputopt.atlas.run import Atlas

    atlas = Atlas({"network": "digits_vit"}, [{"name": "blocks.3", "units": "all", "crop_size": 12}], atlas_dir=str(tmp_path),
                  image_shape=(1, 32, 32))
    info = atlas.layers[0]
    assert (info["kind"], info["shape"], info["units"]) == ("channel", [64, 8, 8], list(range(64)))
