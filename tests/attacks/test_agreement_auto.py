"""APGD, Square and AutoAttack against torchattacks on the digits model and held-out digits.

Unlike PGD (same random start, same images), these are compared by robust accuracy: our random draws are
seeded per sample (an image gets the same start and squares in any batch), torchattacks' come from one
global stream, so single images may differ while the accuracy agrees.

- APGD-CE, the same settings: within 1 point of torchattacks' robust accuracy on 200 held-out digits.
- Square, the same budget: within 4 points on 100 digits. Square is a random search whose outcome per
  image depends on which squares are drawn: at ε = 0.05 and 200 queries, over seeds 0-4, our robust
  accuracy on these 100 digits was 84-88 % and torchattacks' 83-86 % (measured when this test was
  written), so two independent streams agree to about 4 points.
- AutoAttack standard: the same robust images as torchattacks' ``AutoAttack`` ensemble (which also runs
  FAB-T) at two ε, up to one borderline image that the random start decides.
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
    """torchattacks' standard ensemble with its default 10 APGD steps (the paper uses 100), and 500 Square
    queries instead of 5000 to keep the test short on a CPU: the same robust images."""
    ta = _reference("torchattacks")
    x, y = (t[:30] for t in held_out)
    attack = AutoAttack(net, eps=eps, steps=10, queries=500)
    ours = attack(x, y)
    theirs = torchattacks_standard(ta, net, eps, 500)(x, y)
    with torch.no_grad():
        robust_ours, robust_theirs = net(ours).argmax(1) == y, net(theirs).argmax(1) == y
    assert 0 < robust_theirs.sum() < len(y)
    # the same robust accuracy within one image, and the same robust images but for the two borderline ones
    # whose fate depends on the random start: at ε = 0.05, over seeds 0-3 each (before the named random streams),
    # ours broke image 25 at three seeds, torchattacks' at none and broke image 24 at one; with the streams, seed 0
    # breaks 25 and keeps 24, and torchattacks' seed 0 the reverse; the other 13 robust images were the same
    assert abs(int(robust_ours.sum()) - int(robust_theirs.sum())) <= 1
    differ = (robust_ours ^ robust_theirs).nonzero().flatten().tolist()
    assert len(differ) <= 1 or set(differ) <= {24, 25}, (robust_ours.nonzero().flatten(), robust_theirs.nonzero().flatten())
