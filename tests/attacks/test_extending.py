"""The code of "Writing an attack" in docs/extending.md runs, and its MI-FGSM gives torchattacks' images."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from inputopt.attacks import LOSSES, PGD
from tests.attacks.test_agreement import _reference

DOC = Path(__file__).parents[2] / "docs" / "extending.md"


@pytest.fixture(scope="module")
def section() -> dict:
    """The namespace after running every Python block of the section."""
    text = DOC.read_text().split("## Writing an attack", 1)[1].split("\n## ", 1)[0]
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def test_mifgsm_matches_torchattacks(section, net, held_out):
    ta = _reference("torchattacks")
    x, y = (t[:64] for t in held_out)
    ours = section["MIFGSM"](net, eps=0.05, alpha=0.01, steps=10, decay=1.0)(x, y)
    theirs = ta.MIFGSM(net, eps=0.05, alpha=0.01, steps=10, decay=1.0)(x, y)
    assert (ours - theirs).abs().amax() < 1e-5
    assert not torch.equal(ours, PGD(net, eps=0.05, alpha=0.01, steps=10, random_start=False)(x, y))


def test_a_declared_loss_is_registered(section, net, held_out):
    assert LOSSES["logit-gap"] is section["LogitGap"]
    x, y = (t[:8] for t in held_out)
    assert PGD(net, eps=0.05, steps=3, loss="logit-gap")(x, y).shape == x.shape
    del LOSSES["logit-gap"]  # leave the registry as the package made it


def test_a_loss_name_is_taken_once():
    from inputopt.objectives import LabelObjective

    with pytest.raises(ValueError, match="'ce' is taken"):
        class Other(LabelObjective, loss="ce"):
            def score(self, logits, y):
                return logits[:, 0]
    assert LOSSES["ce"].__name__ == "NegativeCrossEntropy"
