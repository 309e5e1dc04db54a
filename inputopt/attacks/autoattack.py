"""AutoAttack (Croce and Hein 2020): the standard ensemble of parameter-free attacks, run as a worst case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from inputopt.attacks.apgd import APGD, APGDT
from inputopt.attacks.base import Attack
from inputopt.attacks.fab import FAB
from inputopt.attacks.gradient import _positive_int
from inputopt.attacks.square import Square
from inputopt.functional.projection import Norm
from inputopt.loss import LossPath
from inputopt.record import RunRecord, StepCallback, StepProgress

__all__ = ["AutoAttack", "AutoAttackReport"]

#: The members of each version, in the order they run (the original's ``set_version``).
VERSIONS = {"standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
            "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"), "rand": ("apgd-ce", "apgd-dlr")}

#: The random restarts of the untargeted APGD members and of untargeted FAB in ``version="plus"`` (the original's 5;
#: every other member runs once, in every version).
PLUS_RESTARTS = 5

#: The draws of the expectation over transformation in ``version="rand"`` (the original's ``eot_iter``).
RAND_EOT = 20


@dataclass
class AutoAttackReport:
    """Which member broke each image, and the robust accuracy after each member.

    Attributes:
        members: the members' names, in the order they ran.
        broken_by: ``(B,)`` the index in :attr:`members` of the attack that broke each image; ``-1``: robust
            to all; ``-2``: misclassified already (clean).
        cost: ``(B,)`` steps (APGD) or queries (Square) of that member until the image was adversarial
            (0 for clean mistakes, -1 for robust images).
    """

    members: tuple[str, ...]
    broken_by: Tensor
    cost: Tensor

    def robust_accuracy(self) -> dict[str, float]:
        """``{"clean": …, member: robust accuracy after it, …}``: the accuracy falls member by member; the last
        is the ensemble's robust accuracy.

        Example:
            >>> report = AutoAttackReport(("apgd-ce", "square"), torch.tensor([-2, 0, 1, -1]), torch.zeros(4))
            >>> report.robust_accuracy()
            {'clean': 0.75, 'apgd-ce': 0.5, 'square': 0.25}
        """
        n = max(self.broken_by.numel(), 1)
        accuracy = {"clean": (self.broken_by != -2).sum().item() / n}
        for i, name in enumerate(self.members):
            accuracy[name] = ((self.broken_by == -1) | (self.broken_by > i)).sum().item() / n
        return accuracy


class AutoAttack(Attack):
    """AutoAttack (Croce and Hein 2020): APGD-CE, APGD-T, FAB-T and Square, each on the images still robust.

    The reliable robust accuracy of RobustBench: an image counts as robust only if no member breaks it.
    Each member runs only on the images the members before it did not break, and stops on an image as
    soon as it is adversarial, so later (costlier) members see few images. The members (``version``):

    - ``"standard"``: the original ensemble: APGD-CE (100 steps), APGD-T (targeted DLR, 9 target classes, 100
      steps), FAB-T (:class:`~inputopt.attacks.FAB` towards 9 target classes, 100 steps) and Square (5000
      queries). ``fab=False`` leaves FAB-T out: in our measurements it broke no image the other three missed, at
      about twice APGD-T's time (docs/adversarial.md has the figures); a number without it is not RobustBench's.
    - ``"plus"``: the original's: APGD-CE and APGD-DLR with 5 random restarts each, untargeted FAB with 5
      restarts, Square, APGD-T, FAB-T, in this order.
    - ``"rand"``: APGD-CE and APGD-DLR, each on the expectation over 20 draws of the model's randomness
      (:class:`~inputopt.attacks.EOT`), for randomized defences, as the original's 20 EOT iterations.

    :meth:`run` returns the usual :class:`~inputopt.attacks.AttackResult`, whose ``info["report"]`` tells which
    member broke each image and the robust accuracy after each member (:class:`AutoAttackReport`).

    Args:
        model: the classifier (an ``nn.Module`` or a network name).
        eps: the budget, or a list of budgets.
        norm: ``"Linf"`` or ``"L2"``.
        version: ``"standard"``, ``"plus"`` or ``"rand"``.
        steps: APGD and FAB-T steps per run (100).
        target_classes: APGD-T's and FAB-T's target classes (9; at most the number of classes − 1).
        queries: Square's query budget (5000).
        fab: run FAB-T, and in ``"plus"`` untargeted FAB (``False``: the ensemble without FAB, faster, not the
            original).
        progress: show the members and each member's steps (or queries) on progress bars.
        **kwargs: ``bounds``, ``mean``, ``std``, ``weights``, ``state_dict``, ``seed`` of :class:`Attack`.

    Example:
        >>> from inputopt.zoo import load_digits_split
        >>> images, labels = (t[:8] for t in load_digits_split("test"))
        >>> attack = AutoAttack("digits", eps=0.1, steps=10, target_classes=2, queries=20)
        >>> result = attack.run(images, labels)[0]
        >>> list(result.info["report"].robust_accuracy())
        ['clean', 'apgd-ce', 'apgd-t', 'fab-t', 'square']
        >>> AutoAttack("digits", eps=0.1, fab=False).members
        ('apgd-ce', 'apgd-t', 'square')
    """

    def __init__(self, model: str | nn.Module, eps: float | Sequence[float] = 8 / 255, norm: Norm = "Linf",
                 version: str = "standard", steps: int = 100, target_classes: int = 9, queries: int = 5000,
                 fab: bool = True, progress: bool = False, **kwargs: Any) -> None:
        if kwargs.pop("loss", None) is not None:  # (a config gives the base's default, None)
            raise ValueError("AutoAttack's members choose their losses; it takes no loss argument")
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
        if not isinstance(fab, bool):
            raise ValueError(f"fab must be True or False, got {fab!r}")
        super().__init__(model, eps=eps, norm=norm, **kwargs)
        if not self.epsilons:
            raise ValueError("AutoAttack needs a budget eps")
        self.version = version
        self.steps = _positive_int(steps, "steps")
        self.target_classes = _positive_int(target_classes, "target_classes")
        self.queries = _positive_int(queries, "queries")
        self.fab = fab
        self.members = tuple(m for m in VERSIONS[version] if fab or m not in ("fab", "fab-t"))
        self.progress = bool(progress)

    def member(self, name: str, eps: float) -> Attack:
        """The member attack ``name`` for budget ``eps``, sharing this attack's network and settings."""
        common = dict(eps=eps, norm=self.norm, bounds=self.bounds, seed=self.seed, mean=self.init_args.get("mean"),
                      std=self.init_args.get("std"))
        network = self.network
        if self.version == "rand":
            from inputopt.attacks.adaptive import EOT

            network = EOT(self.network, RAND_EOT, seed=self.seed)
        restarts = PLUS_RESTARTS if self.version == "plus" else 1
        if name == "apgd-ce":
            attack: Attack = APGD(network, steps=self.steps, loss="ce", restarts=restarts, **common)
        elif name == "apgd-dlr":
            attack = APGD(network, steps=self.steps, loss="dlr", restarts=restarts, **common)
        elif name == "fab":
            attack = FAB(network, steps=self.steps, restarts=restarts, **common)
        elif name == "apgd-t":
            attack = APGDT(network, steps=self.steps, target_classes=self.target_classes, **common)
        elif name == "fab-t":
            attack = FAB(network, steps=self.steps, target_classes=self.target_classes, **common)
        elif name == "square":
            attack = Square(network, queries=self.queries, **common)
        else:
            raise ValueError(f"unknown member {name!r}")
        return attack

    def attack(self, path: LossPath, images: Tensor, targets: Tensor, eps: float | None, keys: Sequence[int],
               start: Tensor | None, callbacks: Sequence[StepCallback]) -> RunRecord:
        if path.objective.targeted:
            raise ValueError("AutoAttack is untargeted (APGD-T chooses its own targets): call it without target")
        if start is not None:
            raise ValueError("AutoAttack starts each member from its own random start; it takes no start")
        record = RunRecord.start(images)
        with torch.no_grad():
            correct = path.activations(images, [""])[""].argmax(1) == targets
        broken_by = torch.where(correct, -1, -2)
        cost = torch.where(correct, -1, 0)
        bars = dict(disable=not self.progress, dynamic_ncols=True)
        members = tqdm(total=len(self.members), desc=f"AutoAttack eps {eps:g}", unit="member", **bars)
        steps = tqdm(desc="  steps", unit="step", leave=False, **bars)
        for index, name in enumerate(self.members):
            rows = (broken_by == -1).nonzero().flatten()
            if not len(rows):
                break
            member = self.member(name, eps)
            members.set_postfix_str(f"{name} on {len(rows)} robust images")
            result = member.run(images[rows], targets[rows], keys=[keys[i] for i in rows.tolist()],
                                callbacks=[StepProgress(steps), *callbacks])[0]
            members.update(1)
            hit = rows[result.success]
            record.best[hit] = result.images[result.success]
            broken_by[hit] = index
            cost[hit] = result.steps[result.success]
        record.first_success = cost.to(images.device)  # -1: robust; 0: a clean mistake; else the member's steps
        record.done = broken_by != -1
        steps.close()
        members.close()
        record.info["report"] = AutoAttackReport(tuple(self.members), broken_by.cpu(), cost.cpu())
        return record.finish(record.best, None)
