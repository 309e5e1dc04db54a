"""The run record of the step engine: best images under a criterion, first success, steps, step sizes shared
with row-wise optimizers; per-row term weights and centred priors in the loss path."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from inputopt.engine import optimize
from inputopt.functional.projection import lp_norms
from inputopt.loss import LossPath
from inputopt.networks import build_network
from inputopt.objectives import NegativeCrossEntropy, UnitActivation
from inputopt.optim import SignGradient
from inputopt.params import PixelImage
from inputopt.priors import Distance
from inputopt.record import HighestScore, RunRecord, SmallestNorm, StepCallback
from inputopt.zoo import load_digits_split
from tests.conftest import Watch

UNITS = [3, 8]


@pytest.fixture(scope="module")
def net():
    return build_network("digits")


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_split("test")
    return images[:8], labels[:8]


def _seen(record_steps: list):
    return Watch(lambda record, step, terms: record_steps.append((step, record.scored.clone(), dict(terms))))


def test_highest_score_keeps_the_best_images_of_every_step(net):
    """With a step too large to climb steadily, the best images are not the last ones; the record has the
    highest objective any step (or the final images) scored, and the images that scored it."""
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    path = LossPath(net, UnitActivation(None, unit=UNITS))
    seen: list = []
    record = optimize(param, path, 12, partial(torch.optim.SGD, lr=3.0), callbacks=[_seen(seen)], best=HighestScore())
    final = path.terms(record.images, None)["objective"]
    scores = torch.stack([terms["objective"] for _, _, terms in seen] + [final])
    torch.testing.assert_close(record.best_score, scores.amax(0))
    torch.testing.assert_close(path.terms(record.best, None)["objective"], record.best_score)
    assert torch.equal(record.images, param().detach())
    assert record.steps.tolist() == [12, 12]


def test_smallest_norm_keeps_the_closest_successful_images(net, digits):
    x, y = digits
    param = PixelImage(clamp=(0, 1)).initialize_from(x)
    path = LossPath(net, NegativeCrossEntropy(labels=y.tolist()))
    seen: list = []
    record = optimize(param, path, 30, partial(SignGradient, lr=0.02), y, callbacks=[_seen(seen)], track_done=True,
                      best=SmallestNorm(x, "L2"))
    norms = torch.stack([torch.where(t["done"], lp_norms(images - x, "L2"), torch.full((len(x),), math.inf))
                         for _, images, t in seen])
    found = norms.isfinite().any(0)
    assert found.any()
    best = lp_norms(record.best - x, "L2")
    final_done = record.done & ~found  # successful only after the last step: the final images count too
    torch.testing.assert_close(best[found], torch.minimum(norms.amin(0), torch.where(
        record.done, lp_norms(record.images - x, "L2"), math.inf))[found])
    assert torch.equal(record.best[~found & ~final_done], x[~found & ~final_done])  # never successful: the start
    # first success: the first step whose images were done
    first = torch.stack([t["done"] for _, _, t in seen]).int().argmax(0)
    assert torch.equal(record.first_success[found], first[found])
    assert (record.first_success[~found & ~record.done] == -1).all()


def test_freeze_done_counts_the_steps_each_row_took(net, digits):
    x, y = digits
    param = PixelImage(clamp=(0, 1)).initialize_from(x)
    path = LossPath(net, NegativeCrossEntropy(labels=y.tolist()))
    record = optimize(param, path, 40, partial(SignGradient, lr=0.02), y, freeze_done=True)
    broken = record.first_success >= 0
    assert broken.any()
    assert torch.equal(record.steps[broken], record.first_success[broken])  # no update once done
    assert (record.steps[~broken] == record.steps.max()).all()


def test_step_sizes_are_the_row_optimizers_own(net, digits):
    """A callback that halves ``record.step_sizes`` changes the steps the row-wise optimizer takes."""
    x, y = digits
    path = LossPath(net, NegativeCrossEntropy(labels=y.tolist()))

    class HalveRowZero(StepCallback):
        def on_after_backward(self, record, step, terms):
            record.step_sizes[0] = 0.0

    param = PixelImage().initialize_from(x)
    record = optimize(param, path, 3, partial(SignGradient, lr=torch.full((len(x),), 0.01)), y,
                      callbacks=[HalveRowZero()])
    assert torch.equal(record.images[0], x[0]) and not torch.equal(record.images[1], x[1])
    assert record.step_sizes[0] == 0 and record.step_sizes[1] == pytest.approx(0.01)


def test_per_row_weights_scale_each_rows_loss(net):
    """SGD on ``w_i·loss_i`` is SGD on ``loss_i`` with the step ``w_i·lr``: a weight of 0 leaves a row still."""
    path = LossPath(net, UnitActivation(None, unit=UNITS))
    weighted = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    start = weighted().detach().clone()
    optimize(weighted, path, 3, partial(torch.optim.SGD, lr=0.1), weights={"objective": torch.tensor([0.0, 2.0])})
    plain = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    optimize(plain, path, 3, partial(torch.optim.SGD, lr=0.2))
    assert torch.equal(weighted()[0].detach(), start[0])
    torch.testing.assert_close(weighted()[1].detach(), plain()[1].detach())


def test_a_centred_prior_pulls_each_row_to_its_own_reference(net):
    """A Distance prior with no objective weight walks each image to its row's reference."""
    path = LossPath(net, UnitActivation(None, unit=UNITS), [Distance(weight=1.0)])
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    reference = torch.stack([torch.zeros(1, 32, 32), torch.ones(1, 32, 32)])
    record = optimize(param, path, 200, partial(torch.optim.SGD, lr=0.25), reference=reference,
                      weights={"objective": torch.zeros(2)})
    torch.testing.assert_close(record.images, reference, atol=1e-4, rtol=0)
    terms = path.terms(record.images, None, reference=reference)
    assert (terms["Distance"] < 1e-4).all()


def test_a_centred_prior_defaults_to_the_starting_images(net):
    """Without a reference, each row is centred on its starting image: a pure distance does not move it."""
    path = LossPath(net, UnitActivation(None, unit=UNITS), [Distance()])
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    start = param().detach().clone()
    record = optimize(param, path, 5, partial(torch.optim.SGD, lr=0.1), weights={"objective": torch.zeros(2)})
    assert torch.equal(record.images, start)
    assert torch.equal(record.terms["Distance"], torch.zeros(2))


def test_exception(net):
    path = LossPath(net, UnitActivation(None, unit=UNITS), [Distance()])
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    with pytest.raises(ValueError, match="weights name 'Distanse', not a term of this loss"):
        optimize(param, path, 1, weights={"Distanse": torch.ones(2)})
    with pytest.raises(ValueError, match=r"weights\['objective'\] must hold one finite number per row \(2\)"):
        optimize(param, path, 1, weights={"objective": torch.tensor([1.0, math.nan])})
    with pytest.raises(ValueError, match="Distance is centred on a per-row reference"):
        path.terms(param(), None)
    with pytest.raises(TypeError, match="Distance is centred"):
        Distance()(param())
    with pytest.raises(KeyError, match="track_done=True"):
        optimize(param, path, 1, best=SmallestNorm(param().detach()))


def test_the_record_starts_empty():
    record = RunRecord.start(torch.zeros(2, 1, 2, 2))
    assert record.batch_size == 2 and record.step_sizes is None and not record.done.any()
