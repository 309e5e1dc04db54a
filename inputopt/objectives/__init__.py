"""What to maximize: subclasses of :class:`InputObjective`, each returning a ``(B,)`` score."""

from inputopt.objectives.activation import ChannelInteraction, ChannelSum, DeepDream, UnitActivation
from inputopt.objectives.base import InputObjective, UnitsObjective
from inputopt.objectives.classification import DLR, LabelObjective, Margin, NegativeCrossEntropy, TargetedDLR
from inputopt.objectives.combine import Sum
from inputopt.objectives.coupled import Alignment, Diversity
from inputopt.objectives.direction import Direction
from inputopt.objectives.inversion import FeatureMatch
from inputopt.objectives.tokens import AttentionHead, TokenActivation

__all__ = ["Alignment", "AttentionHead", "ChannelInteraction", "ChannelSum", "DeepDream", "Direction", "Diversity", "DLR", "FeatureMatch",
           "InputObjective", "LabelObjective", "Margin", "TargetedDLR", "NegativeCrossEntropy", "Sum", "TokenActivation", "UnitActivation",
           "UnitsObjective"]
