"""The code of "Writing an attack" in docs/extending.md runs: its CW is the shipped class, line for line, and its
MI-FGSM gives torchattacks' images."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

import inputopt.attacks.cw
from inputopt.attacks import CW, LOSSES, PGD
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


def _bare(tree: ast.AST, names: set[str]) -> list[str]:
    """The classes ``names`` of ``tree`` as source, without docstrings and type hints."""
    classes = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in names:
            for item in ast.walk(node):
                body = getattr(item, "body", None)
                if isinstance(item, (ast.ClassDef, ast.FunctionDef)) and body and isinstance(body[0], ast.Expr) \
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    item.body = body[1:] or [ast.Pass()]
                if isinstance(item, ast.FunctionDef):
                    item.returns = None
                    for arg in [*item.args.args, *item.args.kwonlyargs, item.args.vararg, item.args.kwarg]:
                        if arg is not None:
                            arg.annotation = None
            classes.append(ast.unparse(node))
    return sorted(classes)


def test_the_cw_of_the_docs_is_the_shipped_one(section):
    documented = "\n".join(block for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
                           if "class CW(Attack)" in block)
    names = {"CW", "AbortEarly"}
    assert _bare(ast.parse(documented), names) == _bare(ast.parse(inspect.getsource(inputopt.attacks.cw)), names)
    # and it runs the same: the documented class gives the shipped class's images
    from inputopt.zoo import load_digits_split

    x, y = (t[:8] for t in load_digits_split("test"))
    ours = section["CW"]("digits", c=1.0, steps=10, lr=0.05, search_steps=2).run(x, y)[0]
    shipped = CW("digits", c=1.0, steps=10, lr=0.05, search_steps=2).run(x, y)[0]
    assert torch.equal(ours.images, shipped.images) and ours.success.any()


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
