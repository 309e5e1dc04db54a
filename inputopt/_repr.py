"""A repr built from constructor arguments, shared by objectives and priors."""

from __future__ import annotations


def init_args_repr(obj: object) -> str:
    """``name=value`` for each argument ``obj`` was constructed with (see ``Configurable``)."""
    return ", ".join(f"{name}={value!r}" for name, value in getattr(obj, "_init_args", {}).items())
