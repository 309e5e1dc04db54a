"""inputopt: optimize the input of a trained, frozen network, the PyTorch Lightning way.

Example:
    >>> from inputopt import InputOptimization, MultiScaleEdgeEnergy, UnitActivation
"""

from inputopt.callbacks import PredictionTable, SaveImages, SphereCheck
from inputopt.capture import capture_activations
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import ChannelSum, InputObjective, NegativeCrossEntropy, UnitActivation
from inputopt.priors import MultiScaleEdgeEnergy, Prior

__all__ = [
    "ChannelSum",
    "InputObjective",
    "InputOptimization",
    "MultiScaleEdgeEnergy",
    "NegativeCrossEntropy",
    "PredictionTable",
    "Prior",
    "SaveImages",
    "SphereCheck",
    "UnitActivation",
    "build_network",
    "capture_activations",
]
__version__ = "0.1.0"
