"""Adversarial attacks, callable in one line: ``PGD(model, eps=8/255)(images, labels) -> adversarial images``.

Every attack runs on the loss path and projection of the rest of the library
(:func:`~inputopt.engine.optimize`); :meth:`Attack.run` returns an :class:`AttackResult` per ε with
per-sample success, norms and the step at which each sample first succeeded.
"""

from inputopt.attacks.base import LOSSES, Attack, AttackResult
from inputopt.attacks.gradient import BIM, FGSM, PGD, GradientAscent
from inputopt.attacks.minimal import FMN

__all__ = ["BIM", "FGSM", "FMN", "LOSSES", "PGD", "Attack", "AttackResult", "GradientAscent"]
