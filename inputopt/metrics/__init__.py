"""torchmetrics ``Metric`` s of the library, with their functional twins."""

from inputopt.metrics.attack import (
    AttackSuccessRate,
    PerturbationNorms,
    RobustAccuracy,
    SphereLabelChange,
    robust_accuracy,
)
from inputopt.metrics.fooling import FoolingRate
from inputopt.metrics.quality import (
    ActivationRatio,
    Diversity,
    HighFrequencyEnergy,
    Plausibility,
    TransferAccuracy,
    activation_ratio,
    diversity,
    high_frequency_energy,
    plausibility_distance,
    transfer_accuracy,
)
from inputopt.metrics.topk import TopKExamples, merge_top_k, unit_scores

__all__ = ["ActivationRatio", "AttackSuccessRate", "Diversity", "FoolingRate", "HighFrequencyEnergy", "PerturbationNorms",
           "Plausibility", "RobustAccuracy", "SphereLabelChange", "TopKExamples", "TransferAccuracy", "activation_ratio",
           "diversity", "high_frequency_energy", "merge_top_k", "plausibility_distance", "robust_accuracy", "transfer_accuracy",
           "unit_scores"]
