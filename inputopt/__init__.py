"""inputopt: optimize the input of a trained, frozen network, the PyTorch Lightning way.

Example:
    >>> from inputopt import FourierImage, InputOptimization, Jitter, MultiScaleEdgeEnergy, UnitActivation
"""

import importlib

#: Where each public name lives. They are imported on first use (PEP 562), so that ``import inputopt.networks``
#: or ``inputopt layers`` do not import Lightning and everything else.
_EXPORTS = {
    "inputopt._resolve": ("allow_packages",),
    "inputopt.callbacks.attack": ("SaveAttackResults",),
    "inputopt.callbacks.checkpoints": ("CheckpointOnInterrupt", "RunLock"),
    "inputopt.callbacks.examples": ("SaveDatasetExamples",),
    "inputopt.callbacks.images": ("LogImages", "SaveImages"),
    "inputopt.callbacks.importance": ("SaveImportance",),
    "inputopt.callbacks.inversion": ("SaveInversions",),
    "inputopt.callbacks.progress": ("InputSummary", "StepProgressBar"),
    "inputopt.callbacks.quality": ("QualityMetrics",),
    "inputopt.callbacks.shared": ("SaveSharedInput",),
    "inputopt.callbacks.sweep": ("SaveSweep",),
    "inputopt.callbacks.tables": ("PredictionTable", "SphereCheck"),
    "inputopt.callbacks.checks": ("EvaluationChecks",),
    "inputopt.callbacks.visualization_checks": ("VisualizationChecks",),
    "inputopt.capture": ("capture_activations",),
    "inputopt.engine": ("NonFiniteError", "StepEngine", "optimize"),
    "inputopt.loss": ("LossPath",),
    "inputopt.module": ("InputOptimization",),
    "inputopt.networks": ("NetworkSpec", "build_network"),
    "inputopt.objectives": ("Alignment", "AttentionHead", "ChannelInteraction", "ChannelSum", "DeepDream", "Direction",
                            "Diversity", "InputObjective", "NegativeCrossEntropy", "Sum", "TokenActivation",
                            "UnitActivation", "UnitsObjective"),
    "inputopt.params": ("FourierImage", "ImageParam", "MacoImage", "PixelImage"),
    "inputopt.priors": ("BlurPenalty", "Distance", "LpNorm", "MultiScaleEdgeEnergy", "Prior", "TotalVariation"),
    "inputopt.problem": ("Problem",),
    "inputopt.record": ("Criterion", "HighestScore", "RunRecord", "SmallestNorm", "StepCallback"),
    "inputopt.functional.random": ("RowRandom",),
    "inputopt.runners.attack": ("AttackEvaluation",),
    "inputopt.runners.base": ("DatasetRunner",),
    "inputopt.runners.examples": ("DatasetExamples",),
    "inputopt.runners.inversion": ("FeatureInversion",),
    "inputopt.runners.shared": ("SharedInputOptimization",),
    "inputopt.runners.sweep": ("FeatureSweep",),
    "inputopt.transforms.insert": ("AddPerturbation", "Insert", "PastePatch"),
    "inputopt.transforms": ("Jitter", "Pad", "RandomRotate", "RandomScale", "Transform"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AddPerturbation",
    "Alignment",
    "AttackEvaluation",
    "AttentionHead",
    "BlurPenalty",
    "ChannelInteraction",
    "ChannelSum",
    "CheckpointOnInterrupt",
    "Criterion",
    "DatasetExamples",
    "DatasetRunner",
    "DeepDream",
    "Direction",
    "Distance",
    "Diversity",
    "EvaluationChecks",
    "FeatureInversion",
    "FeatureSweep",
    "FourierImage",
    "HighestScore",
    "ImageParam",
    "InputObjective",
    "InputOptimization",
    "InputSummary",
    "Insert",
    "Jitter",
    "LogImages",
    "LossPath",
    "LpNorm",
    "MacoImage",
    "MultiScaleEdgeEnergy",
    "NegativeCrossEntropy",
    "NetworkSpec",
    "NonFiniteError",
    "Pad",
    "PastePatch",
    "PixelImage",
    "PredictionTable",
    "Prior",
    "Problem",
    "QualityMetrics",
    "RandomRotate",
    "RandomScale",
    "RowRandom",
    "RunLock",
    "RunRecord",
    "SaveAttackResults",
    "SaveDatasetExamples",
    "SaveImages",
    "SaveImportance",
    "SaveInversions",
    "SaveSharedInput",
    "SaveSweep",
    "SharedInputOptimization",
    "SmallestNorm",
    "SphereCheck",
    "StepCallback",
    "StepEngine",
    "StepProgressBar",
    "Sum",
    "TokenActivation",
    "TotalVariation",
    "Transform",
    "UnitActivation",
    "UnitsObjective",
    "VisualizationChecks",
    "allow_packages",
    "build_network",
    "capture_activations",
    "optimize",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'inputopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
