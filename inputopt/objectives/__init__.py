"""What to maximize: subclasses of :class:`InputObjective`, each returning a ``(B,)`` score."""

from inputopt.objectives.activation import ChannelSum, UnitActivation
from inputopt.objectives.base import InputObjective, UnitsObjective
from inputopt.objectives.classification import LabelObjective, Margin, NegativeCrossEntropy
from inputopt.objectives.combine import Sum

__all__ = ["ChannelSum", "InputObjective", "LabelObjective", "Margin", "NegativeCrossEntropy", "Sum", "UnitActivation", "UnitsObjective"]
