"""APGD-CE against torchattacks' ``APGD`` on the real network and the real photos: EfficientNet-Lite0 (pretrained,
nobody here trained it) on the labelled photos of :class:`inputopt.data.Photos` (8 photos, all classified
correctly), the same settings, within 1 image of robust accuracy.

A small budget (ε = 0.0005, about 0.13/255) so that not every photo breaks, and 3 steps so that the test stays
short on a CPU (two attacks of 4 forward-backward passes of 8 images at 224 px).
"""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import APGD
from tests.attacks.test_agreement import _reference


@pytest.mark.slow
def test_apgd_ce_robust_accuracy_on_photos_matches_torchattacks():
    ta = _reference("torchattacks")
    from inputopt.data import Photos
    from inputopt.networks import build_network

    data = Photos()
    images, labels = data.images, torch.tensor([int(data[i][1]) for i in range(len(data))])
    net = build_network("efficientnet_lite0").eval().requires_grad_(False)

    def robust(adversarial: torch.Tensor) -> int:
        with torch.no_grad():
            return int((net(adversarial).argmax(1) == labels).sum())

    assert robust(images) == len(images), "every photo is classified correctly before the attack"
    ours = robust(APGD(net, eps=0.0005, steps=3, loss="ce")(images, labels))
    theirs = robust(ta.APGD(net, eps=0.0005, steps=3, loss="ce", seed=0)(images, labels))
    assert 0 < theirs < len(images) or 0 < ours < len(images), "an eps where some photos break and some do not"
    assert abs(ours - theirs) <= 1, (ours, theirs)

