"""The objective contract, checked for every concrete InputObjective subclass of the package.

Subclasses are discovered by walking ``InputObjective.__subclasses__()`` after importing every module of
``inputopt.objectives`` (the way timm parametrizes its tests over its registry). Each needs example
constructor arguments valid for the tiny network in ``EXAMPLES`` below: a new objective without one makes
``test_has_example`` fail, so it is noticed (and then tested) the moment it exists.
"""

from __future__ import annotations

import copy
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

import inputopt.objectives
from inputopt import InputOptimization
from inputopt.capture import capture_activations, resolve_layer
from inputopt.objectives import (DLR, Alignment, AttentionHead, ChannelInteraction, ChannelSum, DeepDream, Direction,
                                 Diversity, FeatureMatch, InputObjective, Margin, NegativeCrossEntropy, Sum, TargetedDLR,
                                 TokenActivation, UnitActivation)
from inputopt.objectives.base import select_rows
from inputopt.problem import Problem
from tests.conftest import concrete_subclasses, make_tiny_net, make_tiny_vit

B = 3  # images per batch in every example; list-valued units have one entry per image

#: Example constructor arguments per class, valid for ``TinyConvNet`` on (B, 3, 32, 32) inputs. Prefer
#: layers before a ReLU, so that every score has a non-zero gradient.
EXAMPLES: dict[type, list[dict]] = {
    UnitActivation: [
        dict(layer="features.4", unit=[1, 5, 7]),
        dict(layer="features.0", unit=2, position=(3, 30)),
        dict(layer="classifier.1", unit=[0, 8, 15]),
        dict(layer=None, unit=3),
    ],
    ChannelSum: [
        dict(layer="features.4", channel=[0, 3, 7]),
        dict(layer="features.0", channel=5),
    ],
    NegativeCrossEntropy: [
        dict(),
        dict(labels=[1, 2, 3]),
        dict(target=[4, 5, 6]),
        dict(target=2, layer="classifier.3"),
    ],
    Margin: [
        dict(),
        dict(labels=[1, 2, 3], confidence=5.0),
        dict(target=[4, 5, 6]),
    ],
    DLR: [  # (a label ranked third would have a constant DLR of 1, hence no gradient)
        dict(),
        dict(labels=[0, 5, 9]),
        dict(target=[4, 5, 6]),
    ],
    TargetedDLR: [
        dict(labels=[1, 2, 3], target=[4, 5, 6]),
        dict(labels=0, target=[7, 8, 9]),
    ],
    Sum: [
        dict(terms=[UnitActivation("features.4", unit=[1, 5, 7]), ChannelSum("features.0", channel=2)],
             weights=[1.0, -0.5]),
        dict(terms=[NegativeCrossEntropy(target=[4, 5, 6]), UnitActivation("classifier.1", unit=3)]),
        # rows 0 and 1 coupled by the diversity, row 2 alone: the contract holds group by group
        dict(terms=[ChannelSum("features.4", channel=[1, 1, 5]), Diversity("features.4", group=[1, 1, 5])],
             weights=[1.0, 10.0]),
    ],
    Direction: [
        dict(layer="features.4", direction=[1.0, -0.5, 0.0, 2.0, 0.3, 0.0, -1.0, 0.7]),
        dict(layer="features.0", direction=[[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 1.0, 0]],
             position=(4, 9), cosine=False),
        dict(layer="classifier.1", direction=[float(i % 3) - 1.0 for i in range(16)]),
    ],
    DeepDream: [
        dict(layer="features.4"),
        dict(layer="classifier.1"),
    ],
    ChannelInteraction: [
        dict(layer="features.0", channel1=0, channel2=[1, 2, 3]),
        dict(layer="classifier.1", channel1=[0, 4, 9], channel2=[2, 2, 15]),
    ],
    Diversity: [
        dict(layer="features.4"),
        dict(layer="features.0", group=[7, 7, 7]),
        dict(layer="classifier.1", group=[0, 0, 0]),
    ],
    FeatureMatch: [
        dict(layer="features.4"),
        dict(layer="classifier.1", metric="cosine"),
    ],
    Alignment: [
        dict(layer="features.4"),
        dict(layer="features.0", position=[2, 0, 1], decay_ratio=3.0, max_distance=1),
    ],
    # transformer objectives, on the tiny ViT of NETWORKS (layers that give bfloat16 under autocast)
    TokenActivation: [
        dict(layer="blocks.1.mlp", unit=[0, 5, 15]),
        dict(layer="blocks.0.mlp.0", unit=3, token=7),
    ],
    AttentionHead: [
        dict(layer="blocks.1.attn.heads", head=[0, 1, 1]),
        dict(layer="blocks.0.attn.heads", head=1, token=0),
    ],
}

#: The network of a class's examples when it is not the tiny CNN: the transformer objectives read tokens.
NETWORKS = {TokenActivation: make_tiny_vit, AttentionHead: make_tiny_vit}


#: Objectives whose targets are data from other images (see ``build``).
TARGETS_FROM_OTHER_IMAGES = {FeatureMatch}

CLASSES = concrete_subclasses(InputObjective, inputopt.objectives)


def _docs_objective(name: str) -> type:
    """The objective class ``name`` of docs/extending.md, its code block run verbatim as a module of its own
    (registered in ``sys.modules``, so a config or a checkpoint can name it like any user's objective)."""
    text = (Path(__file__).parents[2] / "docs" / "extending.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if f"class {name}(" in b]
    assert len(blocks) == 1, f"docs/extending.md should have one python block defining {name}, found {len(blocks)}"
    module = types.ModuleType(f"tests.objectives._docs_{name.lower()}")
    sys.modules[module.__name__] = module
    exec(compile(blocks[0], "docs/extending.md", "exec"), module.__dict__)
    return getattr(module, name)


#: The objectives of the docs, as a reader copies them: they must pass the same contract.
DOCS_EXAMPLES: dict[type, list[dict]] = {
    _docs_objective("ChannelMax"): [
        dict(layer="features.4", channel=[0, 3, 7]),
        dict(layer="features.0", channel=5),
    ],
}
CASES = [pytest.param(cls, kwargs, id=f"{cls.__name__}-{i}")
         for cls in CLASSES for i, kwargs in enumerate(EXAMPLES.get(cls) or [None])]
CASES += [pytest.param(cls, kwargs, id=f"docs-{cls.__name__}-{i}")
          for cls, examples in DOCS_EXAMPLES.items() for i, kwargs in enumerate(examples)]


def test_discovery_finds_known_objectives():
    assert {UnitActivation, ChannelSum, NegativeCrossEntropy, Sum} <= set(CLASSES)
    assert InputObjective not in CLASSES  # abstract


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_has_example(cls):
    assert EXAMPLES.get(cls), (f"{cls.__module__}.{cls.__qualname__} is a new InputObjective: add example "
                               f"constructor arguments for the tiny network to EXAMPLES in {__file__}")


def test_no_stale_examples():
    assert set(EXAMPLES) <= set(CLASSES)


# -- helpers --------------------------------------------------------------------------------------------


@pytest.fixture
def net(cls):
    return NETWORKS.get(cls, make_tiny_net)().requires_grad_(False)


def _images(seed: int = 0) -> torch.Tensor:
    return torch.randn(B, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def build(cls, kwargs, net, x):
    """The objective, its evaluation forward, and its targets for the starting images ``x``."""
    if kwargs is None:
        pytest.fail(f"no example for {cls.__name__}: add one to EXAMPLES")
    objective = cls(**kwargs)

    def forward(images):
        return capture_activations(net, images, objective.layers)

    # an objective whose targets are another image's activations (feature inversion) gets those of other images:
    # its default targets, the starting images' own, are already its optimum
    source = _images(seed=1) if cls in TARGETS_FROM_OTHER_IMAGES else x
    return objective, forward, objective.default_targets(forward(source))


def _groups(objective) -> list[int]:
    """A group per row: the rows each row's score may depend on (itself alone unless the objective couples rows)."""
    groups = objective.row_groups(B)
    assert (groups is None) == (not objective.couples_rows)
    return list(range(B)) if groups is None else groups


# -- the contract ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", CASES)
class TestObjectiveContract:
    def test_smoke(self, cls, kwargs, net):
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        score = objective(forward(x), targets)
        assert score.shape == (B,)
        assert score.dtype == torch.float32
        assert torch.isfinite(score).all()

    def test_layers_exist(self, cls, kwargs, net):
        objective = cls(**kwargs)
        assert objective.layers and all(isinstance(name, str) for name in objective.layers)
        for name in objective.layers:
            resolve_layer(net, name)

    def test_rows_independent(self, cls, kwargs, net):
        """Changing image j changes row j's score and no score outside j's group (its row alone, for
        objectives that do not couple rows)."""
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        groups = _groups(objective)
        score = objective(forward(x), targets)
        for j in range(B):
            changed = x.clone()
            changed[j] = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(100 + j)) * 3
            other = objective(forward(changed), targets)
            keep = [i for i in range(B) if groups[i] != groups[j]]
            torch.testing.assert_close(other[keep], score[keep], rtol=1e-6, atol=1e-6)
            assert other[j] != score[j]

    def test_row_subset_scores_like_the_full_batch(self, cls, kwargs, net):
        """A process that owns some rows, in another order, passes their images and their targets: each
        keeps its own score. Rows [2, 0], or for objectives that couple rows, whole groups reversed."""
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        full = objective(forward(x), targets)
        groups = objective.row_groups(B)
        rows = torch.tensor([2, 0] if groups is None else [i for i in reversed(range(B)) if groups[i] == groups[0]])
        part = objective(forward(x[rows]), select_rows(targets, rows))
        torch.testing.assert_close(part, full[rows], rtol=1e-5, atol=1e-5)

    def test_gradient(self, cls, kwargs, net):
        x0 = _images()
        objective, forward, targets = build(cls, kwargs, net, x0)
        groups = _groups(objective)
        for i in range(B):
            x = x0.clone().requires_grad_(True)
            score = objective(forward(x), targets)
            assert score.requires_grad, f"{cls.__name__} gives a score without a gradient"
            (grad,) = torch.autograd.grad(score[i], x)
            assert grad[i].abs().sum() > 0
            others = [j for j in range(B) if groups[j] != groups[i]]
            assert torch.equal(grad[others], torch.zeros_like(grad[others]))
            partners = [j for j in range(B) if j != i and groups[j] == groups[i]]
            if partners and cls in (Diversity, Alignment):  # a batch term reaches other images of its group
                assert any(grad[j].abs().sum() > 0 for j in partners)

    def test_float32_under_autocast(self, cls, kwargs, net):
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        expected = objective(forward(x), targets)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            acts = forward(x)
            score = objective(acts, targets)
        assert any(a.dtype == torch.bfloat16 for a in acts.values())  # the network did run in bf16
        assert score.dtype == torch.float32
        torch.testing.assert_close(score, expected, rtol=0.1, atol=0.1 * expected.abs().max().item() + 0.05)

    def test_deterministic_and_copyable(self, cls, kwargs, net):
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        again, _, again_targets = build(cls, kwargs, net, x)
        copied = copy.deepcopy(objective)
        score = objective(forward(x), targets)
        assert torch.equal(again(forward(x), again_targets), score)
        assert torch.equal(copied(forward(x), targets), score)

    def test_default_targets_are_used_when_none_are_given(self, cls, kwargs, net):
        x = _images()
        objective, forward, _ = build(cls, kwargs, net, x)
        targets = objective.default_targets(forward(x))
        torch.testing.assert_close(objective(forward(x)), objective(forward(x), targets))

    def test_repr(self, cls, kwargs, net):
        objective = cls(**kwargs)
        text = repr(objective)
        assert text.startswith(f"{cls.__name__}(")
        for name, value in kwargs.items():
            assert f"{name}=" in text, f"repr {text!r} does not show argument {name}"
            if value is not None:
                assert f"{name}={value!r}" in text, f"repr {text!r} does not show {name}={value!r}"

    def test_config_rebuilds_an_equal_objective(self, cls, kwargs, net):
        from inputopt._config import instantiate

        objective = cls(**kwargs)
        rebuilt = instantiate(objective.config())
        assert type(rebuilt) is cls and rebuilt.config() == objective.config()
        x = _images()
        acts = capture_activations(net, x, objective.layers)
        assert torch.equal(rebuilt(acts), objective(acts))

    def test_rows_keys_and_names(self, cls, kwargs, net):
        objective = cls(**kwargs)
        assert objective.num_rows in (None, B)
        keys = objective.row_keys(B)
        assert keys is None or (len(keys) == B and all(isinstance(k, int) for k in keys))
        names = objective.row_names(B)
        assert len(names) == B and all(isinstance(n, str) and n for n in names)
        if keys is None:
            assert names == [f"row-{i}" for i in range(B)]  # named by row, not as if the row were a unit

    def test_is_done(self, cls, kwargs, net):
        x = _images()
        objective, forward, targets = build(cls, kwargs, net, x)
        done = objective.is_done(forward(x), targets)
        if done is not None:
            assert done.shape == (B,)
            assert done.dtype == torch.bool

    def test_checkpoint_round_trip(self, cls, kwargs, net, tmp_path):
        """A fit's checkpoint rebuilds the module, objective and targets included, to the same loss."""
        objective = cls(**kwargs)
        module = InputOptimization(Problem(net, objective), image_shape=(3, 32, 32),
                                   batch_size=None if objective.num_rows else B)
        checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
        Trainer(max_steps=2, logger=False, callbacks=[checkpoint], enable_progress_bar=False,
                enable_model_summary=False).fit(module)
        saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["hyper_parameters"]["problem"]
        # the objective rebuilt from the checkpoint's problem config, with the module given again
        restored = InputOptimization.load_from_checkpoint(tmp_path / "last.ckpt",
                                                          problem=Problem.of({**saved, "network": net}))
        assert type(restored.objective) is cls and restored.objective.config() == objective.config()
        assert torch.equal(restored.images(), module.images())
        expected = module.compute_loss(module.param())["loss"]
        torch.testing.assert_close(restored.compute_loss(restored.param())["loss"], expected)


# -- the base class's plumbing, which the contract rests on ----------------------------------------------


class TestBasePlumbing:
    def test_exception_wrong_shape(self):
        class Bad(InputObjective):
            def forward(self, activations):
                return activations[self.layer].flatten(1)  # (B, N), not (B,)

        with pytest.raises(ValueError, match=r"one score per image, shape \(2,\); got \(2, 4\)"):
            Bad("a")({"a": torch.zeros(2, 4)})

    def test_exception_missing_layer(self):
        with pytest.raises(KeyError, match="features.9"):
            ChannelSum("features.9", channel=0)({"features.4": torch.zeros(2, 4, 3, 3)})

    def test_half_result_cast_to_float32_and_float64_kept(self):
        score = ChannelSum("a", channel=0)({"a": torch.ones(2, 3, 2, 2, dtype=torch.bfloat16)})
        assert score.dtype == torch.float32
        assert torch.equal(score, torch.full((2,), 4.0))
        assert ChannelSum("a", channel=0)({"a": torch.ones(2, 3, 2, 2, dtype=torch.float64)}).dtype == torch.float64

    def test_none_layer_is_output(self):
        assert UnitActivation(None, unit=0).layers == ("",)
