"""What the dimensions of a layer's output mean: channels first, channels last, or tokens.

A CNN's layers give ``(B, C, H, W)`` maps (or ``(B, C)`` vectors): the channel is dimension 1. A Swin
stage gives ``(B, H, W, C)``, a ViT block ``(B, N, D)`` tokens: a class token (and sometimes register
tokens) followed by one token per image patch. Indexing dimension 1 of those silently picks an image
row or a token, not a feature. So every captured layer has a :class:`Layout`, **declared, never guessed**:

- by the network family (:func:`declared_layouts`): torchvision's ``VisionTransformer``,
  ``SwinTransformer`` and ``ConvNeXt``; timm's ``VisionTransformer`` (ViT, DeiT) and ``ConvNeXt``; the
  zoo's models (a module may declare its own with an ``inputopt_layouts(prefix)`` method);
- or per layer by the user (:func:`declare_layouts`, or ``layouts:`` in a config), which wins.

A layer without a declaration whose output is ``(B, C)`` or ``(B, C, H, W)`` is channels-first; any other
undeclared output is refused with an error that names the override.

:func:`inputopt.capture.capture_activations` gives every layer in one view, **channels first**:
``(B, C)`` or ``(B, C, H, W)`` with ``C`` the features. Channels-last maps are permuted; tokens become the
map of their patch tokens, ``(B, D, gh, gw)`` on the patch grid (the special tokens left out), so a
"unit position" is a patch-grid position. The raw output (with the class token) stays available as
:attr:`Activations.raw` for the token objectives (:mod:`inputopt.objectives.tokens`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from torch import Tensor, nn

__all__ = ["Activations", "KINDS", "Layout", "LayoutError", "declare_layouts", "declared_layouts", "layout_of",
           "to_channels_first"]

#: The layout kinds: ``(B, C[, H, W])``, ``(B, H, W, C)``, ``(B, N, D)``.
KINDS = ("channels_first", "channels_last", "tokens")

#: The example an error shows for the override.
_OVERRIDE = ("layouts={{{name!r}: {{'kind': 'tokens', 'special': 1, 'grid': [14, 14]}}}} (or {{'kind': "
             "'channels_last'}}) on the network: `network: {{model: ..., layouts: ...}}` in a config's problem, NetworkSpec(layouts=...), "
             "or inputopt.layouts.declare_layouts(network, ...) in Python")


class LayoutError(ValueError):
    """A layer's output does not fit its declared layout, or has none and is not ``(B, C[, H, W])``."""


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    values = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)):
        raise ValueError(f"layout {name} must be an int >= 1 or two of them [rows, columns], got {value!r}")
    return (int(values[0]), int(values[1]))


@dataclass(frozen=True)
class Layout:
    """The meaning of a layer output's dimensions.

    Args:
        kind: ``"channels_first"`` (``(B, C)`` or ``(B, C, H, W)``), ``"channels_last"`` (``(B, H, W, C)``),
            ``"tokens"`` (``(B, N, D)``), or ``"none"``: a declared non-feature output (attention scores,
            per-head queries), refused by the objectives.
        special: tokens only: how many leading special tokens (class, registers, distillation) precede
            the patch tokens.
        grid: tokens only: the patch grid ``[rows, columns]``; or
        patch: tokens only: the patch size in pixels, the grid then being the input size over it.
            Without either, the patch tokens form a ``1 × N`` map (a position is a token index).
        heads: tokens only: the features are ``heads`` attention heads' outputs side by side (an
            attention module's output before its projection), for :class:`~inputopt.objectives.AttentionHead`.

    Example:
        >>> Layout.of({"kind": "tokens", "special": 1, "grid": [14, 14]})
        Layout(kind='tokens', special=1, grid=(14, 14), patch=None, heads=None)
        >>> Layout.of("channels_last").kind
        'channels_last'
    """

    kind: str = "channels_first"
    special: int = 0
    grid: tuple[int, int] | None = None
    patch: tuple[int, int] | None = None
    heads: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS + ("none",):
            raise ValueError(f"layout kind must be one of {', '.join(KINDS)} (or 'none'), got {self.kind!r}")
        if isinstance(self.special, bool) or not isinstance(self.special, int) or self.special < 0:
            raise ValueError(f"layout special must be an int >= 0 (leading special tokens), got {self.special!r}")
        object.__setattr__(self, "grid", _pair(self.grid, "grid"))
        object.__setattr__(self, "patch", _pair(self.patch, "patch"))
        if self.heads is not None and (isinstance(self.heads, bool) or not isinstance(self.heads, int)
                                       or self.heads < 1):
            raise ValueError(f"layout heads must be an int >= 1 or None, got {self.heads!r}")
        if self.kind != "tokens" and (self.special or self.grid or self.patch or self.heads):
            raise ValueError(f"special, grid, patch and heads describe tokens; a {self.kind} layout takes none")

    @classmethod
    def of(cls, value: Union[Layout, str, Mapping[str, Any]]) -> Layout:
        """A layout from itself, its kind (``"tokens"``) or a plain mapping (``{kind: tokens, special: 1}``)."""
        if isinstance(value, Layout):
            return value
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"kind", "special", "grid", "patch", "heads"})
            if unknown:
                raise ValueError(f"unknown layout field(s) {unknown}: valid are kind, special, grid, patch, heads")
            return cls(**dict(value))
        raise ValueError(f"a layout is a kind ({', '.join(KINDS)}) or a mapping {{kind, special, grid, patch, "
                         f"heads}}, got {value!r}")

    def __str__(self) -> str:
        if self.kind != "tokens":
            return self.kind
        parts = [f"special={self.special}"]
        if self.grid:
            parts.append(f"grid={self.grid[0]}x{self.grid[1]}")
        if self.patch:
            parts.append(f"patch={self.patch[0]}x{self.patch[1]}")
        if self.heads:
            parts.append(f"heads={self.heads}")
        return f"tokens({', '.join(parts)})"

    def patch_grid(self, tokens: int, input_size: Sequence[int] | None) -> tuple[int, int]:
        """The ``(rows, columns)`` of ``tokens`` patch tokens: the declared grid, or the input size over the
        patch size, or ``(1, tokens)``; a :class:`LayoutError` when the count does not fit."""
        grid = self.grid
        if grid is None and self.patch is not None and input_size is not None:
            grid = (input_size[0] // self.patch[0], input_size[1] // self.patch[1])
        if grid is None:
            return (1, tokens)
        if grid[0] * grid[1] != tokens:
            raise LayoutError(f"the layout {self} has a {grid[0]}x{grid[1]} patch grid, but the layer gives "
                              f"{tokens} patch tokens (after {self.special} special token(s))")
        return grid


def to_channels_first(output: Tensor, layout: Layout | None, name: str = "",
                      input_size: Sequence[int] | None = None) -> Tensor:
    """``output`` viewed channels first: ``(B, C)`` or ``(B, C, H, W)``, ``C`` the features.

    Channels-last maps are permuted; tokens become the ``(B, D, rows, columns)`` map of their patch tokens
    on the patch grid (the special tokens left out). ``layout=None`` (undeclared) accepts ``(B, C)`` and
    ``(B, C, H, W)`` only; anything else is refused, naming the override.

    Example:
        >>> import torch
        >>> tokens = torch.arange(2 * 5 * 3.0).view(2, 5, 3)  # a class token and a 2x2 grid of 3 features
        >>> to_channels_first(tokens, Layout("tokens", special=1, grid=(2, 2))).shape
        torch.Size([2, 3, 2, 2])
        >>> to_channels_first(tokens, None, "blocks.0")
        Traceback (most recent call last):
        ...
        inputopt.layouts.LayoutError: layer 'blocks.0' gives (2, 5, 3), and its layout is unknown: ...
    """
    shape = tuple(output.shape)
    if layout is None:
        if output.ndim in (2, 4):
            return output
        raise LayoutError(f"layer {name!r} gives {shape}, and its layout is unknown: only (B, C) and (B, C, H, W) "
                          f"outputs are taken as channels first. Declare what its dimensions mean: "
                          + _OVERRIDE.format(name=name))
    if layout.kind == "none":
        raise LayoutError(f"layer {name!r} gives {shape}, declared as no feature map (layout 'none': attention "
                          f"scores or per-head values); pick another layer (`inputopt layers` shows the layouts)")
    if output.ndim == 2:  # pooled features: the same on every layout
        return output
    if layout.kind == "channels_first":
        if output.ndim != 4:
            raise LayoutError(f"layer {name!r} is declared channels_first but gives {shape}, not (B, C, H, W)")
        return output
    if layout.kind == "channels_last":
        if output.ndim != 4:
            raise LayoutError(f"layer {name!r} is declared channels_last but gives {shape}, not (B, H, W, C)")
        return output.permute(0, 3, 1, 2)
    if output.ndim != 3:
        raise LayoutError(f"layer {name!r} is declared as tokens but gives {shape}, not (B, N, D)")
    patches = output.shape[1] - layout.special
    if patches < 1:
        raise LayoutError(f"layer {name!r} gives {output.shape[1]} tokens, not more than its {layout.special} "
                          f"special token(s)")
    rows, columns = layout.patch_grid(patches, input_size)
    return output[:, layout.special:].transpose(1, 2).unflatten(2, (rows, columns))


class Activations(dict):
    """The captured layers, ``{name: output viewed channels first}``, with each layer's :attr:`layouts` and
    :attr:`raw` output (tokens with their class token, channels-last maps as they are).

    Example:
        >>> import torch
        >>> acts = Activations({"a": torch.zeros(2, 3)}, {"a": None}, {"a": torch.zeros(2, 3)})
        >>> acts["a"].shape, acts.layout("a")
        (torch.Size([2, 3]), Layout(kind='channels_first', special=0, grid=None, patch=None, heads=None))
    """

    def __init__(self, views: Mapping[str, Tensor], layouts: Mapping[str, Layout | None],
                 raw: Mapping[str, Tensor]) -> None:
        super().__init__(views)
        self.layouts = dict(layouts)
        self.raw = dict(raw)

    def layout(self, name: str) -> Layout:
        """The layout of layer ``name`` (an undeclared ``(B, C[, H, W])`` layer is channels first)."""
        return self.layouts.get(name) or Layout()


# -- declarations ---------------------------------------------------------------------------------------------

_USER_ATTRIBUTE = "inputopt_layouts_declared"
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def declare_layouts(network: nn.Module, layouts: Mapping[str, Any]) -> nn.Module:
    """Declare (or override) the layout of layers of ``network``, by dotted name; returns ``network``.

    Each value is a :class:`Layout`, a kind or a mapping (``{"kind": "tokens", "special": 1, "grid": [14, 14]}``).
    The declarations are kept on the network and win over its family's.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4))
        >>> _ = declare_layouts(net, {"0": {"kind": "tokens", "special": 1}})
        >>> layout_of(net, "0")
        Layout(kind='tokens', special=1, grid=None, patch=None, heads=None)
    """
    if not isinstance(layouts, Mapping):
        raise ValueError(f"layouts must map layer names to layouts, got {layouts!r}")
    names = dict(network.named_modules())
    parsed = {}
    for name, value in layouts.items():
        name = "" if name is None else name
        if name not in names:
            from inputopt.capture import resolve_layer

            resolve_layer(network, name)  # the error lists the closest names
        try:
            parsed[name] = Layout.of(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"layout of layer {name!r}: {error}") from error
    declared = dict(getattr(network, _USER_ATTRIBUTE, {}))
    declared.update(parsed)
    object.__setattr__(network, _USER_ATTRIBUTE, declared)
    _CACHE.pop(network, None)
    return network


def declared_layouts(network: nn.Module) -> dict[str, Layout]:
    """Every layer of ``network`` with a declared layout: its family's, its own modules', the user's.

    Example:
        >>> import torchvision
        >>> vit = torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=10)
        >>> layouts = declared_layouts(vit)
        >>> str(layouts["encoder.layers.encoder_layer_1.mlp"]), str(layouts["conv_proj"])
        ('tokens(special=1, patch=8x8)', 'channels_first')
    """
    cached = _CACHE.get(network)
    if cached is not None:
        return cached
    found: dict[str, Layout] = {}
    for prefix, module in network.named_modules():
        rule = _family_rule(module)
        if rule is not None:
            found.update({_join(prefix, name): layout for name, layout in rule(module).items()})
        own = getattr(type(module), "inputopt_layouts", None)
        if callable(own):
            found.update({_join(prefix, name): Layout.of(layout) for name, layout in own(module).items()})
    found.update(getattr(network, _USER_ATTRIBUTE, {}))
    _CACHE[network] = found
    return found


def layout_of(network: nn.Module, name: str) -> Layout | None:
    """The declared layout of layer ``name``, or ``None`` (undeclared)."""
    return declared_layouts(network).get(name)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _family_rule(module: nn.Module):
    cls = type(module)
    key = (cls.__module__.split(".")[0], cls.__name__)
    if key[0] not in ("torchvision", "timm"):
        return None
    return _RULES.get(key)


def _under(module: nn.Module, child: str, layout: Layout, prefix: str = "") -> dict[str, Layout]:
    """``layout`` for ``child`` of ``module`` and every module below it, named under ``prefix``."""
    sub = dict(module.named_modules()).get(child)
    if sub is None:
        return {}
    return {_join(prefix, _join(child, name)): layout for name, _ in sub.named_modules()}


def _torchvision_vit(model: nn.Module) -> dict[str, Layout]:
    tokens = Layout("tokens", special=1, patch=_pair(model.patch_size, "patch"))
    found = _under(model, "encoder", tokens)
    for name, sub in model.encoder.named_modules():
        if type(sub).__name__ == "MultiheadAttention":  # returns (output, weights): not one tensor
            found[_join("encoder", name)] = Layout("none")
    found["conv_proj"] = Layout()
    return found


def _torchvision_swin(model: nn.Module) -> dict[str, Layout]:
    found = _under(model, "features", Layout("channels_last"))
    for name, sub in model.features.named_modules():
        if isinstance(sub, nn.Conv2d):  # the patch embedding's convolution, before its permute
            found[_join("features", name)] = Layout()
    found["norm"] = Layout("channels_last")
    return found


def _torchvision_convnext(model: nn.Module) -> dict[str, Layout]:
    found = {}
    for name, sub in model.named_modules():
        if type(sub).__name__ == "CNBlock":  # block: conv, Permute to (B, H, W, C), norm, MLP, Permute back
            for index in range(1, 6):
                found.update(_under(sub, f"block.{index}", Layout("channels_last"), name))
    return found


def _timm_vit(model: nn.Module) -> dict[str, Layout]:
    embed = model.patch_embed
    patch = _pair(tuple(embed.patch_size), "patch")
    tokens = Layout("tokens", special=model.num_prefix_tokens, patch=patch)
    if getattr(embed, "flatten", True):
        found = _under(model, "patch_embed", Layout("tokens", patch=patch))
    else:
        found = _under(model, "patch_embed", Layout("channels_last"))
    found["patch_embed.proj"] = Layout()
    for child in ("pos_drop", "patch_drop", "norm_pre", "blocks", "norm"):
        found.update(_under(model, child, tokens))
    for name, sub in model.blocks.named_modules():
        if type(sub).__name__ == "Attention" and hasattr(sub, "num_heads"):
            base = _join("blocks", name)
            for inner in ("q_norm", "k_norm", "attn_drop"):  # (B, heads, N, head_dim) or attention weights
                found.update(_under(model, _join(base, inner), Layout("none")))
            if isinstance(getattr(sub, "norm", None), nn.Module):  # the heads' outputs, before the projection
                found[_join(base, "norm")] = Layout("tokens", special=model.num_prefix_tokens, patch=patch,
                                                    heads=int(sub.num_heads))
    return found


def _timm_convnext(model: nn.Module) -> dict[str, Layout]:
    found = {}
    for name, sub in model.named_modules():
        if type(sub).__name__ == "ConvNeXtBlock" and not getattr(sub, "use_conv_mlp", True):
            for child in ("norm", "mlp"):  # run on x.permute(0, 2, 3, 1) inside the block's forward
                found.update(_under(sub, child, Layout("channels_last"), name))
    return found


_RULES = {
    ("torchvision", "VisionTransformer"): _torchvision_vit,
    ("torchvision", "SwinTransformer"): _torchvision_swin,
    ("torchvision", "ConvNeXt"): _torchvision_convnext,
    ("timm", "VisionTransformer"): _timm_vit,
    ("timm", "VisionTransformerDistilled"): _timm_vit,
    ("timm", "ConvNeXt"): _timm_convnext,
}

