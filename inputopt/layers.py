"""List a network's layers with their dotted names, types and output shapes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["layer_table"]


@torch.no_grad()
def layer_table(network: nn.Module, image_shape: Sequence[int] = (3, 224, 224)) -> list[tuple[str, str, str]]:
    """``(dotted name, type, output shape)`` of every module, in the order they run on one input.

    Modules that do not run in the forward pass are listed last, with shape ``"-"``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> layer_table(net, (3, 10, 10))
        [('0', 'Conv2d', '(1, 8, 8, 8)'), ('1', 'ReLU', '(1, 8, 8, 8)'), ('', 'Sequential', '(1, 8, 8, 8)')]
    """
    rows: dict[str, tuple[str, str, str]] = {}
    names = {module: name for name, module in network.named_modules()}

    def hook(module: nn.Module, _inputs, output) -> None:
        name = names[module]
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        rows.setdefault(name, (name, type(module).__name__, str(shape)))

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        network(torch.zeros(1, *image_shape))
    finally:
        for handle in handles:
            handle.remove()
    unused = [(name, type(module).__name__, "-") for module, name in names.items() if name not in rows]
    return list(rows.values()) + unused
