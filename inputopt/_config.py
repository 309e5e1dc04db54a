"""Components that remember their constructor arguments, so a checkpoint can rebuild them from plain data."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

__all__ = ["Configurable", "build", "instantiate"]


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
        arguments = {k: v for k, v in arguments.items()
                     if inspect.signature(cls.__init__).parameters[k].kind not in (inspect.Parameter.VAR_POSITIONAL,
                                                                                    inspect.Parameter.VAR_KEYWORD)}
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


def instantiate(config: Mapping[str, Any]) -> Any:
    """Build an object from ``{"class_path": ..., "init_args": {...}}``.

    Example:
        >>> from inputopt import UnitActivation
        >>> objective = instantiate(UnitActivation("features.3", unit=[1, 2]).config())
        >>> objective
        UnitActivation(layer='features.3', unit=[1, 2], position=None)
    """
    if "class_path" not in config:
        raise ValueError(f"a component config needs a 'class_path', got keys {sorted(config)}")
    module_name, _, name = config["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), name)
    return cls(**dict(config.get("init_args") or {}))


def build(value: Any) -> Any:
    """``value`` itself, or the object its ``{"class_path", "init_args"}`` config describes.

    Example:
        >>> build({"class_path": "inputopt.PixelImage", "init_args": {"std": 0.1}})
        PixelImage(mean=0.0, std=0.1, decorrelate=False, color_matrix=None, sigmoid=None, clamp=None, eps=None, norm='Linf')
    """
    return instantiate(value) if isinstance(value, Mapping) else value
