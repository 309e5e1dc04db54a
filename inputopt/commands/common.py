"""What every command line shares."""

from __future__ import annotations

import importlib

__all__ = ["import_components"]


def import_components() -> None:
    """Import every module of the names in :data:`inputopt.__all__`, so that a config can name any of its
    classes by its short name (``class_path: SaveImages``): the command lines resolve a short name among the
    classes already imported, and the package itself imports its modules only when first used.

    Example:
        >>> import sys
        >>> import_components()
        >>> "inputopt.callbacks" in sys.modules
        True
    """
    import inputopt

    for module in inputopt._EXPORTS:
        importlib.import_module(module)
