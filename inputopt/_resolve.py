"""The one resolver of dotted names read from data: a config, a command line or a checkpoint.

A config or a checkpoint is data: every dotted name read from one (a ``class_path``, a ``network:``, the
atlas' ``unit_names:``, a data set) goes through :func:`resolve`, which imports it only when its package is
allowed, and checks what it found before anything of it is called. Allowed are:

- the library's own components (``inputopt``);
- the namespaces :data:`DEFAULT_PACKAGES` (torch, torchvision, timm, Lightning, torchmetrics);
- the user's own packages, named explicitly: the top-level ``allow_packages: [mypkg]`` of a command's config
  (or ``--allow_packages [mypkg]``), the environment variable ``INPUTOPT_ALLOW=mypkg,other``, or
  :func:`allow_packages` from Python.

Anything else is refused *before* it is imported (the package is compared as a string first), with one line
that names the option to allow it. A checkpoint's hyperparameters can name components, never widen the list.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Literal

__all__ = ["ALLOW_ENV", "DEFAULT_PACKAGES", "NotAllowedError", "allow_packages", "allowed_packages", "check_allowed",
           "resolve"]

#: The namespaces whose components a config may name without being told (besides ``inputopt``).
DEFAULT_PACKAGES = ("torch", "torchvision", "timm", "lightning", "pytorch_lightning", "lightning_fabric",
                    "torchmetrics")

#: The environment variable that allows more packages: ``INPUTOPT_ALLOW=mypkg,other``.
ALLOW_ENV = "INPUTOPT_ALLOW"

#: How to allow a package, for error messages.
HOW_TO_ALLOW = (f"allow its package with the config's top-level 'allow_packages: [PACKAGE]' (or "
                f"--allow_packages [PACKAGE]) or the environment variable {ALLOW_ENV}=PACKAGE")

#: What a dotted name may be asked to be: a class (with its base), a network, or a function that returns data.
Kind = Literal["class", "network", "function"]

#: The packages the current command (or the Python caller) allowed: see :func:`allow_packages`.
_allowed_here: list[str] = []


class NotAllowedError(ValueError):
    """A dotted name read from data names a package that is not allowed, or something that may not be built."""


def _check_package_name(name: str, where: str) -> str:
    name = str(name).strip()
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ValueError(f"{where}: {name!r} is not a package name (dotted identifiers, e.g. 'mylab' or "
                         f"'mylab.models')")
    top = name.partition(".")[0]
    if top in ("jsonargparse", "builtins", "__main__") or top in sys.stdlib_module_names:
        raise ValueError(f"{where}: {name!r} cannot be allowed: it is not a package of yours (the standard library "
                         f"or the config parser), and it would let data run any code")
    return name


def allowed_packages() -> tuple[str, ...]:
    """The packages whose names data may use now: ``inputopt``, :data:`DEFAULT_PACKAGES`, the packages of
    ``INPUTOPT_ALLOW`` and those allowed by :func:`allow_packages`.

    Example:
        >>> allowed_packages()[:3]
        ('inputopt', 'torch', 'torchvision')
    """
    from_env = [_check_package_name(n, ALLOW_ENV) for n in os.environ.get(ALLOW_ENV, "").split(",") if n.strip()]
    return tuple(dict.fromkeys(["inputopt", *DEFAULT_PACKAGES, *from_env, *_allowed_here]))


def allow_packages(packages: Iterable[str] | str | None) -> None:
    """Allow the user's own ``packages`` (``"mylab"``, or a list of names) for the rest of this process, or of
    the current ``inputopt`` command: what the config key ``allow_packages:`` does.

    Example:
        >>> allow_packages(["mylab"])
        >>> "mylab" in allowed_packages()
        True
    """
    if packages is None:
        return
    names = packages.split(",") if isinstance(packages, str) else list(packages)
    for name in names:
        name = _check_package_name(name, "allow_packages")
        if name not in _allowed_here:
            _allowed_here.append(name)


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """The packages allowed inside the block are forgotten after it: one ``inputopt`` command's
    ``allow_packages`` does not carry over to the next command run in the same process."""
    saved = list(_allowed_here)
    try:
        yield
    finally:
        _allowed_here[:] = saved


def _under(dotted: str, package: str) -> bool:
    return dotted == package or dotted.startswith(package + ".")


def check_allowed(dotted: str, option: str) -> None:
    """Refuse ``dotted`` unless its package is allowed (:func:`allowed_packages`), before anything is imported.

    Args:
        dotted: the dotted name read from data.
        option: the option it was read from, for the error (``"network"``, ``"class_path"``).

    Raises:
        NotAllowedError: not a dotted name, a private or dunder part, or a package that is not allowed.

    Example:
        >>> check_allowed("torch.optim.SGD", "class_path")
        >>> check_allowed("os.system", "class_path")
        Traceback (most recent call last):
        ...
        inputopt._resolve.NotAllowedError: class_path 'os.system': package 'os' is not allowed (allowed: inputopt, torch, ...
    """
    parts = str(dotted).split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise NotAllowedError(f"{option} {dotted!r} is not a dotted import path (package.module.name)")
    if any(part.startswith("__") for part in parts):
        raise NotAllowedError(f"{option} {dotted!r} names a dunder attribute or module: refused")
    allowed = allowed_packages()
    if not any(_under(dotted, package) for package in allowed):
        raise NotAllowedError(f"{option} {dotted!r}: package {parts[0]!r} is not allowed (allowed: "
                              f"{', '.join(allowed)}); {HOW_TO_ALLOW.replace('PACKAGE', parts[0])}")


def _import(dotted: str, option: str) -> Any:
    module_name, _, name = dotted.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"cannot import {option} {dotted!r}: {error}") from error
    # what the name leads to must live in an allowed package too (not `torch.os.system`, nor an import of os)
    home = getattr(found, "__module__", None) if (isinstance(found, type) or callable(found)) else module_name
    if not isinstance(home, str) or not any(_under(home, package) for package in allowed_packages()):
        raise NotAllowedError(f"{option} {dotted!r} leads to {home or 'an object'}.{getattr(found, '__qualname__', name)}, "
                              f"outside the allowed packages: refused")
    return found


def _required(function) -> list[str]:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ["?"]
    return [p.name for p in parameters
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _model_function(dotted: str, found: Any) -> str | None:
    """Why a function may not build a network (``None``: it may): in torchvision only its registered model
    builders, in timm only its registered models, in torch, Lightning and torchmetrics no function at all;
    elsewhere (the library, the user's own packages) a function without required arguments."""
    top = found.__module__.partition(".")[0]
    if top == "torchvision":
        import torchvision

        if not (found.__module__.startswith("torchvision.models")
                and found.__name__ in torchvision.models.list_models()):
            return "a torchvision function that is not one of torchvision.models.list_models()"
    elif top == "timm":
        import timm

        if not timm.is_model(found.__name__) or found is not timm.models.model_entrypoint(found.__name__):
            return "a timm function that is not a model of timm.list_models()"
    elif top in DEFAULT_PACKAGES:
        return f"a function of {top}, which builds no network (name an nn.Module class)"
    elif top == "inputopt" and not found.__module__.startswith("inputopt.zoo"):
        return "a function of inputopt outside its zoo (inputopt.zoo), which builds no network"
    elif top in sys.stdlib_module_names:
        return f"a function of the standard library ({top})"
    required = _required(found)
    if required:
        return f"a function with required arguments ({', '.join(required)})"
    return None


def resolve(dotted: str, kind: Kind = "class", *, base: type | None = None, option: str | None = None) -> Any:
    """The object a dotted name read from data names, checked before anything of it runs.

    The package is checked first (:func:`check_allowed`: nothing outside the allowed packages is imported),
    then what was found:

    - ``kind="class"``: a class, a subclass of ``base`` (a ``class_path``: an objective, a data set, an
      optimizer);
    - ``kind="network"``: an ``nn.Module`` class, or a function that builds one (torchvision's and timm's
      registered models; in the library's zoo or the user's packages, a function without required arguments);
    - ``kind="function"``: a function without required arguments that returns data (the atlas'
      ``unit_names``), in the library's ``inputopt.zoo`` and ``inputopt.data`` or the user's packages.

    Args:
        dotted: ``"package.module.Name"``.
        kind: what it must be (above).
        base: the base class of ``kind="class"``.
        option: the option it was read from, for errors (default: ``class_path``, ``network``, ``unit_names``).

    Raises:
        NotAllowedError: the package is not allowed, or the object is not what ``kind`` asks for.
        ValueError: it cannot be imported.

    Example:
        >>> import torch
        >>> resolve("torch.optim.SGD", base=torch.optim.Optimizer)
        <class 'torch.optim.sgd.SGD'>
        >>> resolve("torchvision.models.resnet18", "network").__name__
        'resnet18'
        >>> resolve("torch.save", "network")
        Traceback (most recent call last):
        ...
        inputopt._resolve.NotAllowedError: network 'torch.save' is a function of torch, which builds no network ...
    """
    option = option or {"class": "class_path", "network": "network", "function": "unit_names"}[kind]
    check_allowed(dotted, option)
    if kind == "function":
        packages = [p for p in allowed_packages() if p != "inputopt" and p not in DEFAULT_PACKAGES]
        if not any(_under(dotted, p) for p in ["inputopt.zoo", "inputopt.data", *packages]):
            raise NotAllowedError(f"{option} {dotted!r}: a function is taken only from inputopt.zoo, inputopt.data or "
                                  f"your own packages ({HOW_TO_ALLOW.replace('PACKAGE', dotted.partition('.')[0])})")
    found = _import(dotted, option)
    if kind == "class":
        base = object if base is None else base
        if not (isinstance(found, type) and issubclass(found, base)):
            raise TypeError(f"{option} {dotted!r} is not a subclass of {base.__name__} (a {type(found).__name__}); "
                            f"only {base.__module__}.{base.__qualname__} and its subclasses can be built here")
        return found
    if kind == "network":
        from torch import nn

        if isinstance(found, type):
            if issubclass(found, nn.Module):
                return found
            refused = f"a class that is not an nn.Module ({found.__qualname__})"
        elif inspect.isfunction(found):
            refused = _model_function(dotted, found)
            if refused is None:
                return found
        else:
            refused = f"a {type(found).__name__}, neither an nn.Module class nor a function that builds one"
        raise NotAllowedError(f"{option} {dotted!r} is {refused}: a dotted network name must name an nn.Module class "
                              f"or a function that builds one with no arguments (e.g. 'torchvision.models.resnet18')")
    if not inspect.isfunction(found) or _required(found):
        raise NotAllowedError(f"{option} {dotted!r} is not a function without required arguments")
    return found
