"""AutoAttack standard against torchattacks' members on the real network and the real photos: EfficientNet-Lite0
(pretrained, nobody here trained it) on the labelled photos of :class:`inputopt.data.Photos` (8 photos, all
classified correctly), member for member (APGD-CE, APGD-T, FAB-T, Square), the same settings: the robust
accuracy after APGD-CE and after the whole ensemble within one photo.

A small budget (ε = 0.0005, about 0.13/255) so that not every photo breaks, 3 steps and 20 Square queries so
that the test stays short on a CPU (each forward and backward of 8 photos at 224 px takes seconds). Measured
when written: 1 of 8 photos robust after APGD-CE and after the ensemble on both sides, about 18 s a side.
"""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import AutoAttack
from tests.attacks.test_agreement import _reference


@pytest.mark.slow
def test_autoattack_robust_accuracy_on_photos_matches_torchattacks():
    ta = _reference("torchattacks")
    from inputopt.data import Photos
    from inputopt.networks import build_network

    data = Photos()
    images, labels = data.images, torch.tensor([int(data[i][1]) for i in range(len(data))])
    net = build_network("efficientnet_lite0").eval().requires_grad_(False)
    eps, steps, queries = 0.0005, 3, 20

    def correct(adversarial: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(adversarial).argmax(1) == labels

    assert correct(images).all(), "every photo is classified correctly before the attack"
    ours = AutoAttack(net, eps=eps, steps=steps, queries=queries).run(images, labels)[0].info["report"]
    ours_robust = {name: round(value * len(images)) for name, value in ours.robust_accuracy().items()}
    # torchattacks' members in AutoAttack's order, each on the photos the ones before it left robust (as its
    # MultiAttack runs them); 9 target classes for APGD-T and FAB-T, as the standard AutoAttack (n_classes=10)
    members = {"apgd-ce": ta.APGD(net, eps=eps, steps=steps, loss="ce", n_restarts=1, seed=0),
               "apgd-t": ta.APGDT(net, eps=eps, steps=steps, n_classes=10, n_restarts=1, seed=0),
               "fab-t": ta.FAB(net, eps=eps, steps=steps, multi_targeted=True, n_classes=10, n_restarts=1, seed=0),
               "square": ta.Square(net, eps=eps, n_queries=queries, n_restarts=1, seed=0)}
    robust = correct(images)
    theirs_robust = {}
    for name, member in members.items():
        rows = robust.nonzero().flatten()
        if len(rows):
            with torch.no_grad():
                robust[rows] = net(member(images[rows], labels[rows])).argmax(1) == labels[rows]
        theirs_robust[name] = int(robust.sum())
    assert 0 < theirs_robust["apgd-ce"] < len(images), "an eps where some photos break and some do not"
    for name in ("apgd-ce", "square"):  # after APGD-CE, and after the whole ensemble
        assert abs(ours_robust[name] - theirs_robust[name]) <= 1, (name, ours_robust, theirs_robust)
