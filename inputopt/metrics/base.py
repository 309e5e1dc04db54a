"""Checks shared by the runners and callbacks that take metrics as configuration."""

from __future__ import annotations

from torchmetrics import Metric

__all__ = ["check_metrics"]


def check_metrics(metrics: dict[str, Metric] | None, owner: str, reserved: tuple[str, ...] = ()) -> dict[str, Metric]:
    """``metrics`` checked: a dict of torchmetrics ``Metric`` s by name (``None``: empty), for a runner or
    callback that takes more metrics as configuration.

    Example:
        >>> from inputopt.metrics import HighFrequencyEnergy
        >>> list(check_metrics({"hfe": HighFrequencyEnergy()}, "MyCallback"))
        ['hfe']
    """
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise TypeError(f"{owner}: metrics must be a dict of name -> torchmetrics Metric, got {type(metrics).__name__}")
    for name, metric in metrics.items():
        if not isinstance(name, str) or not name or "." in name or "/" in name:
            raise ValueError(f"{owner}: a metric name must be a non-empty string without '.' or '/', got {name!r}")
        if name in reserved:
            raise ValueError(f"{owner}: the metric name {name!r} is taken by a built-in metric ({', '.join(reserved)})")
        if not isinstance(metric, Metric):
            raise TypeError(f"{owner}: metric {name!r} must be a torchmetrics Metric, got {type(metric).__name__}")
    return dict(metrics)
