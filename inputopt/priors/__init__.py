"""What to penalize: subclasses of :class:`Prior`, each returning a ``(B,)`` penalty."""

from inputopt.priors.base import Prior
from inputopt.priors.blur import BlurPenalty
from inputopt.priors.distance import Distance
from inputopt.priors.edge_energy import MultiScaleEdgeEnergy
from inputopt.priors.lp_norm import LpNorm
from inputopt.priors.total_variation import TotalVariation

__all__ = ["BlurPenalty", "Distance", "LpNorm", "MultiScaleEdgeEnergy", "Prior", "TotalVariation"]
