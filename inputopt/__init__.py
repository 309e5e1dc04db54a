"""inputopt: optimize the input of a trained, frozen network, the PyTorch Lightning way.

Example:
    >>> from inputopt import FourierImage, InputOptimization, Jitter, MultiScaleEdgeEnergy, UnitActivation
"""

from inputopt.callbacks import (CheckpointOnInterrupt, LogImages, PredictionTable, SaveAttackResults, SaveImages,
                                SphereCheck)
from inputopt.capture import capture_activations
from inputopt.loss import LossPath, optimize
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import (Alignment, ChannelInteraction, ChannelSum, DeepDream, Direction, Diversity,
                                 InputObjective, NegativeCrossEntropy, Sum, UnitActivation, UnitsObjective)
from inputopt.params import FourierImage, ImageParam, MacoImage, PixelImage
from inputopt.priors import BlurPenalty, LpNorm, MultiScaleEdgeEnergy, Prior, TotalVariation
from inputopt.runner import AttackEvaluation, DatasetRunner
from inputopt.sweep import FeatureSweep, SaveSweep
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transform

__all__ = [
    "Alignment",
    "AttackEvaluation",
    "BlurPenalty",
    "ChannelInteraction",
    "ChannelSum",
    "CheckpointOnInterrupt",
    "DatasetRunner",
    "DeepDream",
    "Direction",
    "Diversity",
    "FeatureSweep",
    "FourierImage",
    "ImageParam",
    "InputObjective",
    "InputOptimization",
    "Jitter",
    "LogImages",
    "LossPath",
    "LpNorm",
    "MacoImage",
    "MultiScaleEdgeEnergy",
    "NegativeCrossEntropy",
    "Pad",
    "PixelImage",
    "PredictionTable",
    "Prior",
    "RandomRotate",
    "RandomScale",
    "SaveAttackResults",
    "SaveImages",
    "SaveSweep",
    "SphereCheck",
    "Sum",
    "TotalVariation",
    "Transform",
    "UnitActivation",
    "UnitsObjective",
    "build_network",
    "capture_activations",
    "optimize",
]
__version__ = "0.1.0"
