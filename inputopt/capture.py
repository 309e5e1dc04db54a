"""Read the activations of named layers, running the network no further than needed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import Tensor, nn

__all__ = ["OUTPUT", "capture_activations", "evaluate", "resolve_layer"]

#: Layer name of the network itself: its output (the empty name, as in ``named_modules()``).
OUTPUT = ""


class _StopForward(Exception):
    """Raised by a hook once every requested layer has produced its output."""


def resolve_layer(network: nn.Module, name: str) -> nn.Module:
    """Return the submodule called ``name`` in ``network.named_modules()``.

    Args:
        network: the network.
        name: a dotted name such as ``"features.28"``; ``""`` is the network itself.

    Raises:
        ValueError: the name does not exist; the message lists the closest valid names.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
        >>> resolve_layer(net, "1")
        ReLU()
    """
    modules = dict(network.named_modules())
    if name in modules:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"closest valid names: {', '.join(close)}" if close else f"valid names include: {', '.join(names[:10])}"
    raise ValueError(
        f"unknown layer {name!r} in {type(network).__name__}; {hint} "
        f"(`inputopt layers` or `network.named_modules()` lists them all)"
    )


def capture_activations(network: nn.Module, x: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
    """Run ``network`` on ``x`` and return the outputs of the named layers.

    Forward hooks are placed on the requested layers only, and the forward pass is stopped as soon as
    all of them have produced their output, so modules after the deepest requested layer never run.
    A layer that runs several times in one forward is captured the first time.

    Args:
        network: the network.
        x: its input.
        layers: dotted names from ``network.named_modules()``; ``""`` is the network's output.

    Returns:
        A dict from layer name to that layer's output.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> acts = capture_activations(net, torch.randn(5, 4), ["1"])
        >>> acts["1"].shape
        torch.Size([5, 3])
    """
    wanted = list(dict.fromkeys(layers))
    if not wanted:
        raise ValueError("capture_activations needs at least one layer name")
    captured: dict[str, Tensor] = {}
    if wanted == [OUTPUT]:
        captured[OUTPUT] = network(x)
        return _tensors(network, captured)

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output) -> None:
            captured.setdefault(name, output)
            if len(captured) == len(wanted):
                raise _StopForward

        return hook

    modules = [resolve_layer(network, name) for name in wanted]  # every name checked before any hook is placed
    handles = [module.register_forward_hook(make_hook(name)) for name, module in zip(wanted, modules)]
    try:
        network(x)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in wanted if name not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} did not run in the forward pass of {type(network).__name__}")
    return _tensors(network, captured)


def evaluate(network: nn.Module, images: Tensor, layers: Iterable[str] = (OUTPUT,),
             normalize: nn.Module | None = None) -> dict[str, Tensor]:
    """The evaluation forward, written once: ``normalize`` (when given), then the network stopped after the
    deepest of ``layers``; no transforms. Loss paths, runners, metrics and attacks read images through it.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> evaluate(net, torch.randn(5, 4))[OUTPUT].shape
        torch.Size([5, 2])
    """
    x = images if normalize is None else normalize(images)
    return capture_activations(network, x, layers)


def _tensors(network: nn.Module, captured: dict[str, Tensor]) -> dict[str, Tensor]:
    """``captured``, once every output is checked to be a tensor (not a tuple, dict or named output)."""
    for name, output in captured.items():
        if not isinstance(output, Tensor):
            raise TypeError(f"layer {name!r} of {type(network).__name__} returns a {type(output).__name__}, not a "
                            f"tensor; objectives read one tensor per layer: pick a layer that returns one (`inputopt "
                            f"layers` lists them), or wrap the network so that it returns its logits")
    return captured
