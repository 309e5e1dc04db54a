"""Adversarial attacks, callable in one line: ``PGD(model, eps=8/255)(images, labels) -> adversarial images``.

Every gradient attack runs on the loss path and projection of the rest of the library
(:func:`~inputopt.engine.optimize`); :meth:`Attack.run` returns an :class:`AttackResult` per ε with
per-sample success, norms and the step at which each sample first succeeded. The robustness evaluation
of record is :class:`AutoAttack` (APGD-CE, APGD-T, FAB-T, Square); :func:`evaluation_checks` runs the checks of
Carlini et al. (2019) on it.

The names are imported on first use, so ``from inputopt.attacks import PGD`` loads only what PGD needs.
"""

import importlib

_EXPORTS = {
    "inputopt.attacks.base": ("LOSSES", "Attack", "AttackResult", "PredictionHistory"),
    "inputopt.attacks.gradient": ("BIM", "FGSM", "PGD", "GradientAscent"),
    "inputopt.attacks.minimal": ("FMN", "FMNRadius", "DDN", "DDNRadius", "DeepFool"),
    "inputopt.attacks.cw": ("CW", "AbortEarly"),
    "inputopt.attacks.apgd": ("APGD", "APGDT", "APGDSchedule", "APGDStep"),
    "inputopt.attacks.square": ("Square",),
    "inputopt.attacks.fab": ("FAB",), "inputopt.attacks.adaptive": ("BPDA", "EOT", "RandomResizePad"),
    "inputopt.attacks.autoattack": ("AutoAttack", "AutoAttackReport"),
    "inputopt.attacks.checks": ("CheckResult", "Quantize", "QuantizedInput", "checks_table", "evaluation_checks"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
