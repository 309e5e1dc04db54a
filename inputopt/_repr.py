"""A repr built from constructor arguments, shared by objectives and priors."""

from __future__ import annotations

import inspect


def init_args_repr(obj: object) -> str:
    """``name=value`` for each constructor argument that ``obj`` stores under the same name."""
    params = inspect.signature(type(obj).__init__).parameters
    parts = [f"{name}={getattr(obj, name)!r}" for name in params
             if name != "self" and not name.startswith("_") and hasattr(obj, name)]
    return ", ".join(parts)
