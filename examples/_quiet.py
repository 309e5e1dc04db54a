"""Quiet Lightning for the example scripts, which run many short fits: no "GPU available" or "Seed set"
lines per fit, and none of the warnings that say nothing about the example."""

from __future__ import annotations

import logging
import warnings


def quiet_lightning() -> None:
    """Lightning's info logs off; its internal deprecation and small-data warnings ignored."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*treespec.*")  # Lightning 2.6 on torch 2.14
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
