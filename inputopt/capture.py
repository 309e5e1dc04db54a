"""Read the activations of named layers, running the network no further than needed."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from inputopt.layouts import Activations, declared_layouts, to_channels_first

__all__ = ["OUTPUT", "capture_activations", "evaluate", "resolve_layer", "select_output"]

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

    Every output is given channels first, ``(B, C)`` or ``(B, C, H, W)`` with ``C`` the features, whatever
    the layer's declared layout (:mod:`inputopt.layouts`: channels-last maps permuted, tokens as the map of
    their patch tokens on the patch grid); the raw outputs stay in :attr:`~inputopt.layouts.Activations.raw`.
    A layer whose layout is not declared and whose output is not ``(B, C[, H, W])`` is refused (a
    :class:`~inputopt.layouts.LayoutError` naming the override). A network whose forward returns a tuple,
    dict or dataclass gives the entry named by its ``inputopt_output`` (see :func:`select_output`).

    Returns:
        An :class:`~inputopt.layouts.Activations` dict from layer name to that layer's output.

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
        return _views(network, captured, x)

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs, output) -> None:
            captured.setdefault(name, output if name != OUTPUT else select_output(network, output))
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
    return _views(network, captured, x)


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


def select_output(network: nn.Module, output: object) -> object:
    """The network's output to use: ``output`` itself, or, for a forward that returns a tuple, a dict or a
    dataclass (a Hugging Face ``ModelOutput``), its entry named by the network's ``inputopt_output``
    attribute (an index, a key or a field name; set by ``NetworkSpec(output=...)``, ``output:`` in a config).

    Example:
        >>> net = nn.Linear(2, 2)
        >>> net.inputopt_output = "logits"
        >>> select_output(net, {"logits": 1, "hidden": 2})
        1
    """
    key = getattr(network, "inputopt_output", None)
    if key is None or isinstance(output, Tensor):
        return output
    try:
        if isinstance(output, (tuple, list)):
            return output[int(key)]
        if isinstance(output, Mapping):
            return output[key]
        return getattr(output, str(key))
    except (KeyError, IndexError, AttributeError, ValueError, TypeError):
        fields = (list(range(len(output))) if isinstance(output, (tuple, list)) else list(output)
                  if isinstance(output, Mapping) else [n for n in vars(output) if not n.startswith("_")])
        raise ValueError(f"{type(network).__name__} returns a {type(output).__name__} without the output "
                         f"{key!r}; its outputs are {fields}") from None


def _views(network: nn.Module, captured: dict[str, object], x: Tensor) -> Activations:
    """``captured`` (checked to be tensors) viewed channels first by their declared layouts."""
    if OUTPUT in captured:
        captured[OUTPUT] = select_output(network, captured[OUTPUT])
    for name, output in captured.items():
        if not isinstance(output, Tensor):
            what = ("name the output to use (output: logits, or an index, in the network's config)" if name == OUTPUT
                    else "pick a layer that returns one (`inputopt layers` lists them)")
            raise TypeError(f"layer {name!r} of {type(network).__name__} returns a {type(output).__name__}, not a "
                            f"tensor; objectives read one tensor per layer: {what}, or wrap the network so that it "
                            f"returns its logits")
    layouts = declared_layouts(network)
    size = tuple(x.shape[-2:]) if x.ndim == 4 else None
    views = {name: to_channels_first(output, layouts.get(name), name, size) for name, output in captured.items()}
    return Activations(views, {name: layouts.get(name) for name in captured}, captured)
