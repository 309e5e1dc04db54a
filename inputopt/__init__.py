"""inputopt: optimize the input of a trained, frozen network, the PyTorch Lightning way.

Example:
    >>> from inputopt import FourierImage, InputOptimization, Jitter, MultiScaleEdgeEnergy, UnitActivation
"""

from inputopt.callbacks import CheckpointOnInterrupt, LogImages, PredictionTable, SaveImages, SphereCheck
from inputopt.capture import capture_activations
from inputopt.loss import LossPath, optimize
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import ChannelSum, InputObjective, NegativeCrossEntropy, Sum, UnitActivation, UnitsObjective
from inputopt.params import FourierImage, ImageParam, MacoImage, PixelImage
from inputopt.priors import MultiScaleEdgeEnergy, Prior
from inputopt.transforms import Jitter, Pad, RandomRotate, RandomScale, Transform

__all__ = [
    "ChannelSum",
    "CheckpointOnInterrupt",
    "FourierImage",
    "ImageParam",
    "InputObjective",
    "InputOptimization",
    "Jitter",
    "LogImages",
    "LossPath",
    "MacoImage",
    "MultiScaleEdgeEnergy",
    "NegativeCrossEntropy",
    "Pad",
    "PixelImage",
    "PredictionTable",
    "Prior",
    "RandomRotate",
    "RandomScale",
    "SaveImages",
    "SphereCheck",
    "Sum",
    "Transform",
    "UnitActivation",
    "UnitsObjective",
    "build_network",
    "capture_activations",
    "optimize",
]
__version__ = "0.1.0"
