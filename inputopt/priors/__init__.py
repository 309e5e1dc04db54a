"""What to penalize: subclasses of :class:`Prior`, each returning a ``(B,)`` penalty."""

from inputopt.priors.base import Prior
from inputopt.priors.edge_energy import MultiScaleEdgeEnergy

__all__ = ["MultiScaleEdgeEnergy", "Prior"]
