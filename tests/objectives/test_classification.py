"""NegativeCrossEntropy and Margin against references written out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inputopt.capture import capture_activations
from inputopt.objectives import Margin, NegativeCrossEntropy
from inputopt.objectives.base import select_rows


def ref_ce(logits: torch.Tensor, y) -> torch.Tensor:
    """Per-row cross-entropy, log-sum-exp minus the label's logit, in float64."""
    logits = logits.double()
    out = []
    for i in range(logits.shape[0]):
        label = y[i] if isinstance(y, (list, torch.Tensor)) else y
        out.append(logits[i].exp().sum().log() - logits[i, int(label)])
    return torch.stack(out)


def _logits(shape=(4, 10), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3


def _start(net, objective, x):
    """The activations of the starting images, from which ``default_targets`` builds the targets."""
    return capture_activations(net, x, objective.layers)


class TestNegativeCrossEntropy:
    def test_smoke(self):
        out = NegativeCrossEntropy(labels=[0, 1])({"": torch.tensor([[2.0, 0.0], [2.0, 0.0]])})
        assert out.shape == (2,)
        assert out.dtype == torch.float32
        assert out[1] > out[0]

    def test_untargeted_equals_cross_entropy(self):
        logits = _logits()
        labels = [3, 0, 9, 3]
        out = NegativeCrossEntropy(labels=labels)({"": logits})
        torch.testing.assert_close(out, F.cross_entropy(logits, torch.tensor(labels), reduction="none"))
        torch.testing.assert_close(out.double(), ref_ce(logits, labels), rtol=1e-5, atol=1e-5)

    def test_untargeted_single_label_broadcast(self):
        logits = _logits()
        out = NegativeCrossEntropy(labels=7)({"": logits})
        torch.testing.assert_close(out.double(), ref_ce(logits, 7), rtol=1e-5, atol=1e-5)

    def test_targeted_equals_minus_cross_entropy(self):
        logits = _logits()
        target = [1, 2, 2, 8]
        out = NegativeCrossEntropy(target=target)({"": logits})
        torch.testing.assert_close(out.double(), -ref_ce(logits, target), rtol=1e-5, atol=1e-5)
        out = NegativeCrossEntropy(target=5)({"": logits})
        torch.testing.assert_close(out.double(), -ref_ce(logits, 5), rtol=1e-5, atol=1e-5)

    def test_half_logits_scored_in_float32(self):
        logits = _logits().bfloat16()
        out = NegativeCrossEntropy(labels=[1, 2, 3, 4])({"": logits})
        assert out.dtype == torch.float32
        torch.testing.assert_close(out.double(), ref_ce(logits.float(), [1, 2, 3, 4]), rtol=1e-5, atol=1e-5)

    def test_other_layer(self):
        logits = _logits()
        objective = NegativeCrossEntropy(labels=2, layer="classifier.3")
        assert objective.layers == ("classifier.3",)
        torch.testing.assert_close(objective({"classifier.3": logits}).double(), ref_ce(logits, 2),
                                   rtol=1e-5, atol=1e-5)

    def test_default_targets_are_the_prediction(self):
        # a linear classifier, whose predictions on random inputs vary from row to row
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5)).eval()
        x = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(1))
        objective = NegativeCrossEntropy()
        y = objective.default_targets(_start(net, objective, x))
        predicted = net(x).argmax(1)
        assert len(set(predicted.tolist())) > 1  # a real test: the rows have different labels
        assert torch.equal(y, predicted)
        # the score is then the cross-entropy to the starting prediction
        x2 = x + 0.5 * torch.randn_like(x)
        logits = net(x2)
        torch.testing.assert_close(objective(capture_activations(net, x2, [""]), y).double(),
                                   ref_ce(logits, predicted), rtol=1e-5, atol=1e-5)

    def test_default_targets_on_tiny_net(self, tiny_net):
        x = torch.randn(3, 3, 32, 32)
        objective = NegativeCrossEntropy()
        y = objective.default_targets(_start(tiny_net, objective, x))
        assert y.dtype == torch.long
        assert torch.equal(y, tiny_net(x).argmax(1))

    def test_default_targets_keep_given_labels(self, tiny_net):
        x = torch.randn(2, 3, 32, 32)
        objective = NegativeCrossEntropy(labels=[9, 9])
        assert objective.default_targets(_start(tiny_net, objective, x)).tolist() == [9, 9]
        objective = NegativeCrossEntropy(target=[0, 1])
        assert objective.default_targets(_start(tiny_net, objective, x)).tolist() == [0, 1]
        objective = NegativeCrossEntropy(labels=3)  # one label, shared by every row
        y = objective.default_targets(_start(tiny_net, objective, x))
        assert y.dtype == torch.long and y.tolist() == [3, 3]

    def test_targets_from_start_are_kept(self, tiny_net):
        # labels come from the *starting* input: the caller keeps them, and scores later inputs against them
        x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        objective = NegativeCrossEntropy()
        start = objective.default_targets(_start(tiny_net, objective, x))
        x2 = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 10
        acts = capture_activations(tiny_net, x2, objective.layers)
        logits = tiny_net(x2)
        assert not torch.equal(logits.argmax(1), start)  # a real test: the prediction has moved
        torch.testing.assert_close(objective(acts, start).double(), ref_ce(logits, start), rtol=1e-5, atol=1e-5)
        assert objective.is_done(acts, start).tolist() == (logits.argmax(1) != start).tolist()

    def test_without_labels_scores_the_own_prediction(self):
        # no labels and no targets given: the labels are the prediction on the activations scored
        logits = _logits()
        out = NegativeCrossEntropy()({"": logits})
        torch.testing.assert_close(out.double(), ref_ce(logits, logits.argmax(1)), rtol=1e-5, atol=1e-5)

    def test_targets_given_replace_the_labels(self):
        logits = _logits()
        out = NegativeCrossEntropy(labels=0)({"": logits}, torch.tensor([3, 1, 4, 1]))
        torch.testing.assert_close(out.double(), ref_ce(logits, [3, 1, 4, 1]), rtol=1e-5, atol=1e-5)
        out = NegativeCrossEntropy(target=0)({"": logits}, torch.tensor([3, 1, 4, 1]))
        torch.testing.assert_close(out.double(), -ref_ce(logits, [3, 1, 4, 1]), rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("kwargs", [dict(labels=[3, 0, 9, 3]), dict(target=[1, 2, 2, 8]), dict()])
    def test_select_rows(self, kwargs):
        logits = _logits()
        objective = NegativeCrossEntropy(**kwargs)
        targets = objective.default_targets({"": logits})
        full = objective({"": logits}, targets)
        rows = [3, 1]
        out = objective({"": logits[rows]}, select_rows(targets, rows))
        torch.testing.assert_close(out, full[rows])
        done = objective.is_done({"": logits[rows]}, select_rows(targets, rows))
        assert torch.equal(done, objective.is_done({"": logits}, targets)[rows])

    def test_is_done_untargeted(self):
        objective = NegativeCrossEntropy(labels=[0, 1, 2])
        logits = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        assert objective.is_done({"": logits}).tolist() == [False, True, False]

    def test_is_done_targeted(self):
        objective = NegativeCrossEntropy(target=[0, 1, 2])
        logits = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        done = objective.is_done({"": logits})
        assert done.dtype == torch.bool
        assert done.tolist() == [True, False, True]

    def test_is_done_with_targets(self):
        # the targets given replace the constructor's labels
        logits = torch.tensor([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        untargeted = NegativeCrossEntropy(labels=0)
        assert untargeted.is_done({"": logits}, torch.tensor([0, 1, 2])).tolist() == [False, True, False]
        targeted = NegativeCrossEntropy(target=1)
        assert targeted.is_done({"": logits}, torch.tensor([0, 1, 2])).tolist() == [True, False, True]

    def test_is_done_without_labels(self):
        # without labels or targets the labels are the prediction on these same logits: no row is done
        assert not NegativeCrossEntropy().is_done({"": _logits()}).any()

    def test_num_rows(self):
        assert NegativeCrossEntropy(labels=[1, 2, 3]).num_rows == 3
        assert NegativeCrossEntropy(target=4).num_rows is None
        assert NegativeCrossEntropy().num_rows is None
        assert NegativeCrossEntropy(target=0).targeted  # class 0 is a target, though falsy
        assert not NegativeCrossEntropy(labels=1).targeted

    def test_repr(self):
        assert repr(NegativeCrossEntropy(target=[1, 2])) == "NegativeCrossEntropy(labels=None, target=[1, 2], layer=None)"

    def test_exception_labels_and_target(self):
        with pytest.raises(ValueError, match="not both"):
            NegativeCrossEntropy(labels=1, target=2)

    @pytest.mark.parametrize("kwargs", [dict(labels=10), dict(target=[0, 12]), dict(labels=[-1, 0])])
    def test_exception_class_out_of_range(self, tiny_net, kwargs):
        objective = NegativeCrossEntropy(**kwargs)
        acts = _start(tiny_net, objective, torch.zeros(2, 3, 32, 32))
        message = r"out of range: the network has 10 classes, valid classes are 0\.\.9"
        with pytest.raises(ValueError, match=message):
            objective.default_targets(acts)
        with pytest.raises(ValueError, match=message):  # a call without targets builds and checks them
            objective(acts)

    def test_exception_class_out_of_range_logits(self):
        with pytest.raises(ValueError, match=r"class 5 is out of range.*0\.\.4"):
            NegativeCrossEntropy(target=5).default_targets({"": torch.zeros(1, 5)})

    def test_exception_not_logits(self, tiny_net):
        objective = NegativeCrossEntropy(labels=0, layer="features.4")
        acts = _start(tiny_net, objective, torch.zeros(1, 3, 32, 32))
        with pytest.raises(ValueError, match=r"\(B, num_classes\) logits"):
            objective.default_targets(acts)
        with pytest.raises(ValueError, match=r"\(B, num_classes\) logits"):  # also without labels
            NegativeCrossEntropy(layer="features.4").default_targets(acts)

    def test_exception_label_count(self):
        with pytest.raises(ValueError, match="has 3 labels, one per image, but the batch has 2 images"):
            NegativeCrossEntropy(labels=[0, 1, 2])({"": torch.zeros(2, 4)})
        with pytest.raises(ValueError, match="NegativeCrossEntropy has 3 targets, one per image, but the batch has 2"):
            NegativeCrossEntropy(target=[0, 1, 2]).default_targets({"": torch.zeros(2, 4)})

    @pytest.mark.parametrize("kwargs", [dict(labels="cat"), dict(target=[1.0]), dict(labels=[]),
                                        dict(target=[0, None]), dict(labels=True), dict(target=[1, False]),
                                        dict(labels=2.0)])
    def test_exception_label_type(self, kwargs):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an int or a non-empty list of ints"):
            NegativeCrossEntropy(**kwargs)


# -- Margin (the CW logit margin) --------------------------------------------------------------------------
def _margin_reference(logits, y):
    """max over the other classes minus the own logit, row by row in plain Python."""
    rows = []
    for row, label in zip(logits.tolist(), y.tolist()):
        rows.append(max(v for j, v in enumerate(row) if j != label) - row[label])
    return torch.tensor(rows)


def test_margin_matches_reference_untargeted_and_targeted():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    torch.testing.assert_close(Margin()({"": logits}, y), _margin_reference(logits, y))
    t = torch.tensor([4, 3, 2, 1, 0, 1])
    torch.testing.assert_close(Margin(target=t.tolist())({"": logits}, t), -_margin_reference(logits, t))


def test_margin_is_positive_exactly_when_done():
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(50, dtype=torch.long)
    objective = Margin(labels=0)
    assert torch.equal(objective({"": logits}, y) > 0, objective.is_done({"": logits}, y))


def test_margin_confidence_caps_the_score():
    logits = torch.tensor([[0.0, 10.0], [0.0, 1.0]])
    score = Margin(confidence=2.0)({"": logits}, torch.tensor([0, 0]))
    torch.testing.assert_close(score, torch.tensor([2.0, 1.0]))


@pytest.mark.parametrize("confidence", [float("nan"), float("inf"), "1", True])
def test_margin_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence"):
        Margin(confidence=confidence)
