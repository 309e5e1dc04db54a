"""torchmetrics ``Metric`` s of the library, with their functional twins."""

from inputopt.metrics.attack import (
    AttackSuccessRate,
    PerturbationNorms,
    RobustAccuracy,
    SphereLabelChange,
    robust_accuracy,
)

__all__ = ["AttackSuccessRate", "PerturbationNorms", "RobustAccuracy", "SphereLabelChange", "robust_accuracy"]
