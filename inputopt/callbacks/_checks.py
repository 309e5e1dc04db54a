"""Argument and module checks shared by the callbacks of a fit."""

from __future__ import annotations

from lightning.pytorch import LightningModule

from inputopt.module import InputOptimization


def _check_module(pl_module: LightningModule, who: str) -> InputOptimization:
    if not isinstance(pl_module, InputOptimization):
        raise TypeError(f"{who} works with InputOptimization, not {type(pl_module).__name__}")
    return pl_module


def _check_display(display: str, nrow: int | None, scale: int) -> None:
    """The display arguments of the image callbacks, checked when they are built (not at the end of a run)."""
    if display not in ("std", "clamp"):
        raise ValueError(f"display must be 'std' or 'clamp', got {display!r}")
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1):
        raise ValueError(f"nrow must be an int >= 1 or None, got {nrow!r}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
