"""Argument and module checks, and the output folder, shared by the callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from lightning.pytorch import LightningModule, Trainer

from inputopt.module import InputOptimization

M = TypeVar("M", bound=LightningModule)


def _check_module(pl_module: LightningModule, who: str, kind: type[M] = InputOptimization) -> M:
    """``pl_module``, if it is a ``kind``; else a ``TypeError`` that names the callback ``who``."""
    if not isinstance(pl_module, kind):
        raise TypeError(f"{who} works with {kind.__name__}, not {type(pl_module).__name__}")
    return pl_module


def _output_dir(trainer: Trainer, dirpath: str | os.PathLike | None) -> Path:
    """Where a callback writes: its ``dirpath``, else the trainer's log directory, else its root directory.
    Every process must call it: ``trainer.log_dir`` is a collective under DDP."""
    return Path(dirpath or trainer.log_dir or trainer.default_root_dir)


def _check_display(display: str, nrow: int | None, scale: int) -> None:
    """The display arguments of the image callbacks, checked when they are built (not at the end of a run)."""
    if display not in ("std", "clamp"):
        raise ValueError(f"display must be 'std' or 'clamp', got {display!r}")
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1):
        raise ValueError(f"nrow must be an int >= 1 or None, got {nrow!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
