"""List a network's layers with their dotted names, types, output shapes and layouts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from inputopt.layouts import declared_layouts

__all__ = ["layer_table"]


@torch.no_grad()
def layer_table(network: nn.Module, image_shape: Sequence[int] = (3, 224, 224)) -> list[tuple[str, str, str, str]]:
    """``(dotted name, type, output shape, layout)`` of every module, in the order they run on one input.

    The layout (:mod:`inputopt.layouts`) is the declared one (``tokens(special=1, grid=14x14)``,
    ``channels_last``, ...); an undeclared ``(B, C[, H, W])`` output is ``channels_first``; any other
    undeclared output is ``unknown`` (objectives refuse it until it is declared). Modules that do not run
    in the forward pass are listed last, with shape and layout ``"-"``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> layer_table(net, (3, 10, 10))[0]
        ('0', 'Conv2d', '(1, 8, 8, 8)', 'channels_first')
    """
    rows: dict[str, tuple[str, str, str, str]] = {}
    names = {module: name for name, module in network.named_modules()}
    layouts = declared_layouts(network)

    def hook(module: nn.Module, _inputs, output) -> None:
        name = names[module]
        if isinstance(output, torch.Tensor):
            shape = str(tuple(output.shape))
            layout = layouts.get(name)
            if layout is not None and layout.kind == "tokens" and layout.grid is None and layout.patch is not None:
                layout = type(layout)("tokens", layout.special, (image_shape[1] // layout.patch[0],
                                                                 image_shape[2] // layout.patch[1]), None, layout.heads)
            text = str(layout) if layout is not None else "channels_first" if output.ndim in (2, 4) else "unknown"
        else:
            shape, text = type(output).__name__, "-"
        rows.setdefault(name, (name, type(module).__name__, shape, text))

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        network(torch.zeros(1, *image_shape))
    finally:
        for handle in handles:
            handle.remove()
    unused = [(name, type(module).__name__, "-", "-") for module, name in names.items() if name not in rows]
    return list(rows.values()) + unused
