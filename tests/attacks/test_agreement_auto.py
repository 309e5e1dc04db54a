"""APGD, Square and AutoAttack against torchattacks on the digits model and held-out digits.

Unlike PGD (same random start, same images), these are compared by robust accuracy: our random draws are
seeded per sample (an image gets the same start and squares in any batch), torchattacks' come from one
global stream, so single images may differ while the accuracy agrees.

- APGD-CE, the same settings: within 1 point of torchattacks' robust accuracy on 200 held-out digits.
- Square, the same budget: within 4 points on 100 digits. Square is a random search whose outcome per
  image depends on which squares are drawn: at ε = 0.05 and 200 queries, over seeds 0-4, our robust
  accuracy on these 100 digits was 84-88 % and torchattacks' 83-86 % (measured when this test was
  written), so two independent streams agree to about 4 points.
- AutoAttack standard against torchattacks' standard ensemble, member for member (APGD-CE, APGD-T, FAB-T,
  Square), on 100 held-out digits at two ε: never more than one image more robust, at most two fewer (our
  APGD-T breaks two more at ε = 0.05, whatever the seed: the test's docstring has the figures).
"""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import APGD, AutoAttack, Square
from tests.attacks.test_agreement import _reference


def accuracy(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (net(images).argmax(1) == labels).float().mean().item()


@pytest.mark.slow
@pytest.mark.parametrize("norm, eps", [("Linf", 0.05), ("L2", 1.0)])
def test_apgd_ce_robust_accuracy_matches_torchattacks(net, held_out, norm, eps):
    ta = _reference("torchattacks")
    x, y = (t[:200] for t in held_out)
    ours = accuracy(net, APGD(net, eps=eps, norm=norm, steps=50, loss="ce")(x, y), y)
    theirs = accuracy(net, ta.APGD(net, eps=eps, norm=norm, steps=50, loss="ce", seed=0)(x, y), y)
    assert 0.05 < theirs < 0.95, "choose an eps where the attack breaks some images and not all"
    assert abs(ours - theirs) <= 0.01 + 1e-6, (ours, theirs)


def test_apgd_dlr_breaks_as_many_as_torchattacks(net, held_out):
    ta = _reference("torchattacks")
    x, y = (t[:100] for t in held_out)
    ours = accuracy(net, APGD(net, eps=0.05, steps=20, loss="dlr")(x, y), y)
    theirs = accuracy(net, ta.APGD(net, eps=0.05, steps=20, loss="dlr", seed=0)(x, y), y)
    assert abs(ours - theirs) <= 0.02 + 1e-6, (ours, theirs)


@pytest.mark.slow
def test_square_robust_accuracy_matches_torchattacks(net, held_out):
    ta = _reference("torchattacks")
    x, y = (t[:100] for t in held_out)
    ours = accuracy(net, Square(net, eps=0.05, queries=200)(x, y), y)
    theirs = accuracy(net, ta.Square(net, eps=0.05, n_queries=200, seed=0)(x, y), y)
    assert theirs < 0.95, "choose an eps where the attack breaks some images"
    assert abs(ours - theirs) <= 0.04 + 1e-6, (ours, theirs)


def torchattacks_standard(ta, net, eps: float, queries: int):
    """torchattacks' ``AutoAttack(version="standard")``, member for member (APGD-CE, APGD-T, FAB-T, Square, each
    with torchattacks' defaults: 10 steps), with Square's query budget as a parameter."""
    return ta.MultiAttack([
        ta.APGD(net, eps=eps, seed=0, loss="ce", n_restarts=1),
        ta.APGDT(net, eps=eps, seed=0, n_classes=10, n_restarts=1),
        ta.FAB(net, eps=eps, seed=0, multi_targeted=True, n_classes=10, n_restarts=1),
        ta.Square(net, eps=eps, seed=0, n_queries=queries, n_restarts=1),
    ])


@pytest.mark.slow
@pytest.mark.parametrize("eps", [0.05, 0.08])
def test_autoattack_robust_accuracy_matches_torchattacks(net, held_out, eps):
    """The same four members on both sides (APGD-CE, APGD-T, FAB-T, Square) with torchattacks' default of 10
    steps (the paper uses 100) and 200 Square queries instead of 5000 to keep the test short on a CPU, on 100
    held-out digits: ours never leaves more than one image more robust, and at most two fewer.

    The two fewer are APGD-T's: alone, at ε = 0.05 on these digits, torchattacks' APGD-T left 50, 50, 50, 52
    robust over its seeds 0-3 and ours 48 at each of the same seeds (measured when FAB-T joined the ensemble;
    FAB-T alone left 61 on both sides, the same images). At ε = 0.08 the ensembles agree within one."""
    ta = _reference("torchattacks")
    x, y = (t[:100] for t in held_out)
    attack = AutoAttack(net, eps=eps, steps=10, queries=200)
    assert attack.members == ("apgd-ce", "apgd-t", "fab-t", "square")
    ours = attack(x, y)
    theirs = torchattacks_standard(ta, net, eps, 200)(x, y)
    with torch.no_grad():
        robust_ours, robust_theirs = int((net(ours).argmax(1) == y).sum()), int((net(theirs).argmax(1) == y).sum())
    assert 0 < robust_theirs < len(y)
    assert robust_theirs - 2 <= robust_ours <= robust_theirs + 1, (robust_ours, robust_theirs)
