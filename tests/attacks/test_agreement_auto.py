"""APGD, Square and AutoAttack against torchattacks on the digits model and held-out digits.

Unlike PGD (same random start, same images), these are compared by robust accuracy: our random draws are
seeded per sample (an image gets the same start and squares in any batch), torchattacks' come from one
global stream, so single images may differ while the accuracy agrees.

- APGD-CE, the same settings: within 1 point of torchattacks' robust accuracy on 200 held-out digits, on the
  mean over seeds 0-2 (at ε = 0.05 L∞ over seeds 0-4, ours gave 35.5-37.5 % and torchattacks' 35.5-36.5 %).
- Square, the same budget: within 4 points on 100 digits. Square is a random search whose outcome per
  image depends on which squares are drawn: at ε = 0.05 and 200 queries, over seeds 0-4, our robust
  accuracy on these 100 digits was 84-88 % and torchattacks' 83-86 % (measured when this test was
  written), so two independent streams agree to about 4 points.
- AutoAttack standard against torchattacks' standard ensemble, member for member (APGD-CE, APGD-T, FAB-T,
  Square), on 100 held-out digits at two ε: the same robust accuracy within one image.
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
    seeds = range(3)  # the random starts' draws move a robust accuracy by up to 2 points: compare means
    ours = sum(accuracy(net, APGD(net, eps=eps, norm=norm, steps=50, loss="ce", seed=s)(x, y), y) for s in seeds) / 3
    theirs = sum(accuracy(net, ta.APGD(net, eps=eps, norm=norm, steps=50, loss="ce", seed=s)(x, y), y)
                 for s in seeds) / 3
    assert 0.05 < theirs < 0.95, "choose an eps where the attack breaks some images and not all"
    assert abs(ours - theirs) <= 0.01 + 1e-6, (ours, theirs)


def test_apgd_dlr_breaks_as_many_as_torchattacks(net, held_out):
    ta = _reference("torchattacks")
    x, y = (t[:100] for t in held_out)
    ours = accuracy(net, APGD(net, eps=0.05, steps=20, loss="dlr")(x, y), y)
    theirs = accuracy(net, ta.APGD(net, eps=0.05, steps=20, loss="dlr", seed=0)(x, y), y)
    assert abs(ours - theirs) <= 0.02 + 1e-6, (ours, theirs)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_from_the_same_start_breaks_the_same_images_as_torchattacks(net, held_out, loss):
    """From torchattacks' own random start, our APGD breaks exactly the images torchattacks' APGD breaks, image by
    image: torchattacks' L∞ APGD is the reference implementation's (Croce and Hein's ``autopgd_base.py``) line for
    line, and ours makes the same steps, checkpoints and restarts from the best point, and scores the same points
    (the start and the point after each step), in the same floating-point arithmetic. (The images differ where
    both succeed: ours keeps the first adversarial point, theirs the last.)

    Before our APGD scored the reference's points in its arithmetic, 8 (CE) and 4 (DLR) of these 200 digits came
    out differently; now none does."""
    ta = _reference("torchattacks")
    x, y = (t[:200] for t in held_out)
    with torch.no_grad():
        correct = net(x).argmax(1) == y
    x, y, eps = x[correct], y[correct], 0.04
    torch.manual_seed(0)  # torchattacks' start: its first draw after seeding with its seed (0)
    t = 2 * torch.rand(x.shape) - 1
    start = x + eps * torch.ones(len(x), 1, 1, 1) * t / t.flatten(1).abs().amax(1).view(-1, 1, 1, 1)
    ours = APGD(net, eps=eps, steps=10, loss=loss).run(x, y, start=start)[0].success
    with torch.no_grad():
        theirs = net(ta.APGD(net, eps=eps, steps=10, loss=loss, seed=0)(x, y)).argmax(1) != y
    assert 0 < int(theirs.sum()) < len(y)
    assert torch.equal(ours, theirs), (ours != theirs).nonzero().flatten().tolist()


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
    held-out digits: the same robust accuracy within one image.

    Measured when APGD's points and projection were made the reference implementation's (Croce and Hein's
    ``autopgd_base.py``): 50 robust on both sides at ε = 0.05, 3 on both sides at ε = 0.08 (torchattacks' seeds 0
    and 1). Before, our APGD-T scored one point more per run (the point after its last step) and rounded its
    projection differently, and left 48 at every seed where torchattacks left 50. The random starts (ours seeded
    per image, theirs from one stream) still move single images: APGD-T alone on these digits at ε = 0.05 left
    50, 52, 51, 49 robust at our seeds 0-3 and 50, 50, 50, 52 at torchattacks' (on the first 50 digits: 23, 24,
    23, 22 and 21, 23, 25, 25), the same spread on both sides; the test's seeds agree to the image."""
    ta = _reference("torchattacks")
    x, y = (t[:100] for t in held_out)
    attack = AutoAttack(net, eps=eps, steps=10, queries=200)
    assert attack.members == ("apgd-ce", "apgd-t", "fab-t", "square")
    ours = attack(x, y)
    theirs = torchattacks_standard(ta, net, eps, 200)(x, y)
    with torch.no_grad():
        robust_ours, robust_theirs = int((net(ours).argmax(1) == y).sum()), int((net(theirs).argmax(1) == y).sum())
    assert 0 < robust_theirs < len(y)
    assert abs(robust_ours - robust_theirs) <= 1, (robust_ours, robust_theirs)
