"""Components that remember their constructor arguments, so a checkpoint can rebuild them from plain data."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from inputopt._resolve import resolve

__all__ = ["Configurable", "build", "import_class", "instantiate"]


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Configurable):  # a component holding components (e.g. a sum of objectives)
        return value.config()
    return value


class Configurable:
    """Mixin that records the arguments a subclass was constructed with.

    ``config()`` returns ``{"class_path": ..., "init_args": {...}}``, the same form a YAML config uses,
    which :func:`instantiate` turns back into an equal object. Constructor arguments are plain values
    (layer names, ints, lists, floats, or other components), so the config is plain data that a
    checkpoint stores safely.
    """

    def __new__(cls, *args: Any, **kwargs: Any):
        obj = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind_partial(None, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(inspect.signature(cls.__init__).parameters)), None)  # self
        except TypeError:  # let __init__ report the bad call
            arguments = {}
        # ``**kwargs`` a subclass passes on to its base (an attack's ``mean``, ``std``, ``bounds``, ``seed``) are
        # constructor arguments too: recorded by name, so the config rebuilds them. ``*args`` have no name and
        # cannot be given back by keyword: they are left out.
        parameters = inspect.signature(cls.__init__).parameters
        recorded: dict[str, Any] = {}
        for k, v in arguments.items():
            kind = parameters[k].kind
            if kind == inspect.Parameter.VAR_KEYWORD:
                recorded.update(v)
            elif kind != inspect.Parameter.VAR_POSITIONAL:
                recorded[k] = v
        arguments = recorded
        object.__setattr__(obj, "_init_args", arguments)
        return obj

    @property
    def init_args(self) -> dict[str, Any]:
        """The constructor arguments, defaults included."""
        return dict(self._init_args)

    def extra_repr(self) -> str:
        """``name=value`` for every constructor argument: the ``repr`` of a component module."""
        return ", ".join(f"{name}={value!r}" for name, value in self._init_args.items())

    def config(self) -> dict[str, Any]:
        """``{"class_path": "package.module.Class", "init_args": {...}}`` for :func:`instantiate`."""
        cls = type(self)
        init_args = {name: _plain(value) for name, value in self._init_args.items()}
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args}


def instantiate(config: Mapping[str, Any], base: type = None) -> Any:
    """Build an object from ``{"class_path": ..., "init_args": {...}}``.

    Only a subclass of ``base`` (default: :class:`Configurable`, every component of the library) is built:
    a config, or a checkpoint's plain-data hyperparameters, cannot name any other callable (``os.system``).

    Example:
        >>> from inputopt import UnitActivation
        >>> objective = instantiate(UnitActivation("features.3", unit=[1, 2]).config())
        >>> objective
        UnitActivation(layer='features.3', unit=[1, 2], position=None)
        >>> instantiate({"class_path": "os.system", "init_args": {"command": "echo hi"}})
        Traceback (most recent call last):
        ...
        inputopt._resolve.NotAllowedError: class_path 'os.system': package 'os' is not allowed ...
    """
    return import_class(config, Configurable if base is None else base)(**dict(config.get("init_args") or {}))


def import_class(config: Mapping[str, Any], base: type) -> type:
    """The class a ``{"class_path", "init_args"}`` config names, checked to be a subclass of ``base``
    before anything of it runs: :func:`inputopt._resolve.resolve`, which imports nothing outside the allowed
    packages (the library, torch, torchvision, timm, Lightning, torchmetrics and the user's own).

    Example:
        >>> import torch
        >>> import_class({"class_path": "torch.optim.SGD"}, torch.optim.Optimizer)
        <class 'torch.optim.sgd.SGD'>
    """
    if not isinstance(config, Mapping) or "class_path" not in config:
        raise ValueError(f"a component config needs a 'class_path', got {config!r}")
    return resolve(str(config["class_path"]), "class", base=base)


def build(value: Any, base: type = None) -> Any:
    """``value`` itself, or the object its ``{"class_path", "init_args"}`` config describes (a subclass of
    ``base``, default :class:`Configurable`: see :func:`instantiate`).

    Example:
        >>> build({"class_path": "inputopt.PixelImage", "init_args": {"std": 0.1}})
        PixelImage(mean=0.0, std=0.1, decorrelate=False, color_matrix=None, sigmoid=None, clamp=None, eps=None, norm='Linf')
    """
    return instantiate(value, base) if isinstance(value, Mapping) else value
