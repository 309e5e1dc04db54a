"""Objectives of transformer layers: a neuron at one token (the class token), one attention head's output.

Every objective reads a tokens layer ``(B, N, D)`` channels first, as the map of its patch tokens on the
patch grid (:mod:`inputopt.layouts`): :class:`~inputopt.objectives.ChannelSum` is a neuron summed over
the patch tokens, :class:`~inputopt.objectives.UnitActivation` a neuron at one patch-grid position. The two
here read the raw tokens, which the capture keeps (:attr:`inputopt.layouts.Activations.raw`), so they
need a layer whose layout is declared ``tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from inputopt.layouts import Layout
from inputopt.objectives.base import UnitsObjective

__all__ = ["AttentionHead", "TokenActivation", "raw_tokens"]


def raw_tokens(activations: dict[str, Tensor], layer: str, owner: str) -> tuple[Tensor, Layout]:
    """The raw ``(B, N, D)`` tokens of ``layer`` and its layout; a ``ValueError`` unless its layout is tokens.

    Example:
        >>> from inputopt.layouts import Activations
        >>> tokens = torch.zeros(2, 5, 3)
        >>> acts = Activations({"b": tokens[:, 1:].transpose(1, 2)}, {"b": Layout("tokens", special=1)}, {"b": tokens})
        >>> raw_tokens(acts, "b", "TokenActivation")[0].shape
        torch.Size([2, 5, 3])
    """
    layouts = getattr(activations, "layouts", None) or {}
    layout = layouts.get(layer)
    raw = getattr(activations, "raw", {}).get(layer)
    if layout is None or layout.kind != "tokens" or raw is None or raw.ndim != 3:
        shape = tuple(activations[layer].shape) if layer in activations else "?"
        raise ValueError(f"{owner} reads the tokens of a transformer layer, but layer {layer!r} (output {shape}) has "
                         f"layout {layout or 'channels_first (undeclared)'}: pick a layer whose layout is tokens "
                         f"(`inputopt layers` shows them), or declare it (layouts: {{{layer!r}: {{kind: tokens, "
                         f"special: 1}}}} in the network's fields: network: {{model: ..., layouts: ...}})")
    return raw, layout


class TokenActivation(UnitsObjective):
    """A neuron at one token: feature ``unit`` of token ``token`` (default 0: the class token).

    The tokens are counted from the first, special tokens included (a ViT's class token is token 0; its
    patch tokens follow). For a neuron summed over the patch tokens, use
    :class:`~inputopt.objectives.ChannelSum`; at one patch, :class:`~inputopt.objectives.UnitActivation`
    with a patch-grid ``position``.

    Args:
        layer: a layer whose layout is tokens (``"blocks.3"``, ``"encoder.layers.encoder_layer_5.mlp"``).
        unit: the feature index, a list with one per image, or ``"all"``.
        token: the token index (0: the class token).

    Example:
        >>> from inputopt.layouts import Activations
        >>> tokens = torch.zeros(2, 5, 3); tokens[:, 0, 2] = 4.0
        >>> acts = Activations({"b": tokens[:, 1:].transpose(1, 2)}, {"b": Layout("tokens", special=1)}, {"b": tokens})
        >>> TokenActivation("b", unit=[2, 0])(acts)
        tensor([4., 0.])
    """

    units_argument = "unit"

    def __init__(self, layer: str, unit: int | Sequence[int] | Literal["all"], token: int = 0) -> None:
        super().__init__(layer, unit)
        if isinstance(token, bool) or not isinstance(token, int) or token < 0:
            raise ValueError(f"token must be an int >= 0 (0: the class token), got {token!r}")
        self.unit = unit
        self.token = token

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        raw, _ = raw_tokens(activations, self.layer, type(self).__name__)
        if not self.token < raw.shape[1]:
            raise ValueError(f"token {self.token} is out of range for layer {self.layer!r}, which has {raw.shape[1]} "
                             f"tokens: valid tokens are 0..{raw.shape[1] - 1}")
        return super().default_targets(activations)

    def forward(self, activations: dict[str, Tensor], units: Tensor) -> Tensor:
        raw, _ = raw_tokens(activations, self.layer, type(self).__name__)
        return self.select(raw[:, self.token], units)


class AttentionHead(UnitsObjective):
    r"""One attention head's output: the mean over the patch tokens (or at one token) of its squared norm.

    The layer holds the heads' outputs side by side, before the attention's output projection: its
    layout is tokens with ``heads`` declared. Head ``h`` is features ``h·d .. (h+1)·d − 1`` (``d = D / heads``);
    row ``i`` scores :math:`\frac{1}{|T|}\sum_{t \in T} \lVert o_{h_i, t} \rVert^2` over the patch tokens
    ``T`` (or the one ``token``). Which modules expose it: timm's ViT/DeiT (``blocks.<i>.attn.norm``, an
    identity unless ``scale_norm``) and the zoo's ``digits_vit`` (``blocks.<i>.attn.heads``). torchvision's
    ViT does not (its ``nn.MultiheadAttention`` computes the heads inside one function).

    Args:
        layer: the heads' outputs (``"blocks.2.attn.norm"`` in timm, ``"blocks.2.attn.heads"`` in digits_vit).
        head: the head index, a list with one per image, or ``"all"``.
        token: a token index (0: the class token); ``None``: the mean over the patch tokens.

    Example:
        >>> from inputopt.layouts import Activations
        >>> tokens = torch.zeros(1, 3, 4); tokens[0, 1:, 2:] = 1.0  # two heads of two features, two patches
        >>> layout = Layout("tokens", special=1, heads=2)
        >>> acts = Activations({"a": tokens[:, 1:].transpose(1, 2)}, {"a": layout}, {"a": tokens})
        >>> AttentionHead("a", head=[1])(acts), AttentionHead("a", head=0)(acts)
        (tensor([2.]), tensor([0.]))
    """

    units_argument = "head"

    def __init__(self, layer: str, head: int | Sequence[int] | Literal["all"], token: int | None = None) -> None:
        super().__init__(layer, head)
        if token is not None and (isinstance(token, bool) or not isinstance(token, int) or token < 0):
            raise ValueError(f"token must be an int >= 0 or None (the patch tokens), got {token!r}")
        self.head = head
        self.token = token

    def _heads(self, activations: dict[str, Tensor]) -> tuple[Tensor, Layout]:
        raw, layout = raw_tokens(activations, self.layer, type(self).__name__)
        if layout.heads is None:
            raise ValueError(f"AttentionHead needs the heads' outputs side by side: layer {self.layer!r} has layout "
                             f"{layout}, without heads; timm's ViTs expose them at blocks.<i>.attn.norm, digits_vit at "
                             f"blocks.<i>.attn.heads (or declare heads: in its layout)")
        return raw, layout

    def resolve(self, activations: dict[str, Tensor]) -> None:
        if self._unit_list is None:
            self._unit_list = list(range(self._heads(activations)[1].heads))

    def check_units(self, activation: Tensor) -> None:
        """Heads are checked in :meth:`default_targets`, against the declared number of heads."""

    def default_targets(self, activations: dict[str, Tensor]) -> Tensor:
        raw, layout = self._heads(activations)
        bad = [h for h in self.units if not 0 <= h < layout.heads]
        if bad:
            raise ValueError(f"head {bad[0]} is out of range for layer {self.layer!r}, which has {layout.heads} heads: "
                             f"valid heads are 0..{layout.heads - 1}")
        if self.token is not None and not self.token < raw.shape[1]:
            raise ValueError(f"token {self.token} is out of range for layer {self.layer!r}, which has {raw.shape[1]} "
                             f"tokens: valid tokens are 0..{raw.shape[1] - 1}")
        return super().default_targets(activations)

    def forward(self, activations: dict[str, Tensor], heads: Tensor) -> Tensor:
        raw, layout = self._heads(activations)
        raw = raw if raw.dtype == torch.float64 else raw.float()
        tokens = raw[:, layout.special:] if self.token is None else raw[:, self.token:self.token + 1]
        per_head = tokens.unflatten(2, (layout.heads, -1))  # (B, T, heads, d)
        rows = torch.arange(raw.shape[0], device=raw.device)
        chosen = per_head[rows, :, heads.to(raw.device)]  # (B, T, d)
        return chosen.pow(2).sum(-1).mean(1)

