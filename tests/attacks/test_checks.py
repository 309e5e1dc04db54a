"""The evaluation checks pass where the evaluation is sound and flag a gradient-masked model."""

from __future__ import annotations

import pytest
import torch

from inputopt.attacks import APGD, PGD, QuantizedInput, checks_table, evaluation_checks

SMALL = dict(eps_factors=(0.5, 1, 4), restarts=2, queries=300, minimal_steps=30, sphere_points=20)


@pytest.fixture(scope="module")
def data(held_out):
    images, labels = held_out
    return images[:24], labels[:24]


def by_name(results):
    return {r.name: r for r in results}


def test_checks_flag_gradient_masking(net, data):
    """Behind a rounding of the input, gradients vanish: the unbounded white-box attack fails, Square breaks
    images PGD cannot, and FMN finds nothing."""
    x, y = data
    results = by_name(evaluation_checks(APGD(QuantizedInput(net, levels=8), eps=0.1, steps=10), x, y, **SMALL))
    assert not results["unbounded"].passed and results["unbounded"].values["robust_accuracy"] > 0.2
    assert not results["black-box"].passed
    assert results["black-box"].values["square"] < results["black-box"].values["white_box"]
    assert not results["sphere"].passed and results["sphere"].values["found"] == 0


def test_checks_pass_on_a_sound_evaluation(net, data):
    x, y = data
    results = by_name(evaluation_checks(APGD(net, eps=0.1, steps=30), x, y, **SMALL))
    for name in ("unbounded", "eps curve", "black-box", "sphere"):
        assert results[name].passed, results[name]
    assert results["unbounded"].values["robust_accuracy"] == 0


def test_checks_table_says_fail(net, data):
    x, y = data
    table = checks_table(evaluation_checks(PGD(QuantizedInput(net), eps=0.1, alpha=0.02, steps=3), x[:8], y[:8],
                                           **SMALL))
    assert table.startswith("| check | result | numbers |") and "**FAIL**" in table


def test_checks_need_a_budget(net, data):
    from inputopt.attacks import FMN

    with pytest.raises(ValueError, match="budgeted"):
        evaluation_checks(FMN(net, steps=3), *data)


def test_quantized_input_masks_the_gradient(net):
    x = torch.rand(2, 1, 32, 32, requires_grad=True)
    QuantizedInput(net, levels=4)(x).sum().backward()
    assert x.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="levels"):
        QuantizedInput(net, levels=1)
