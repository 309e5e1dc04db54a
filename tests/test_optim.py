"""The attack optimizers against their one-line definitions, and the per-row radius of the projection."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from inputopt.engine import optimize
from inputopt.loss import LossPath
from inputopt.objectives import NegativeCrossEntropy
from inputopt.optim import NormalizedGradient, SignGradient
from inputopt.params import PixelImage
from tests.conftest import Watch


def test_sign_gradient_step():
    x = torch.nn.Parameter(torch.randn(3, 2, 4, 4))
    start = x.detach().clone()
    x.grad = torch.randn_like(x)
    SignGradient([x], lr=0.25).step()
    torch.testing.assert_close(x.detach(), start - 0.25 * x.grad.sign())


def test_normalized_gradient_moves_every_row_by_lr():
    x = torch.nn.Parameter(torch.zeros(4, 3, 5, 5))
    x.grad = torch.randn_like(x) * torch.tensor([1e-3, 1.0, 10.0, 0.0]).view(-1, 1, 1, 1)
    NormalizedGradient([x], lr=0.5).step()
    lengths = x.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(lengths, torch.tensor([0.5, 0.5, 0.5, 0.0]))
    direction = x.detach()[1].flatten() / 0.5
    torch.testing.assert_close(direction, -x.grad[1].flatten() / x.grad[1].norm())


@pytest.mark.parametrize("cls", [SignGradient, NormalizedGradient])
@pytest.mark.parametrize("lr", [-1.0, float("nan"), float("inf"), True])
def test_bad_learning_rate(cls, lr):
    with pytest.raises(ValueError, match="lr"):
        cls([torch.nn.Parameter(torch.zeros(1, 1))], lr=lr)


def test_per_row_radius_projects_each_row_onto_its_own_ball():
    param = PixelImage(eps=1.0, norm="L2").initialize_from(torch.zeros(3, 1, 2, 2))
    param.radius = torch.tensor([0.5, 1.0, 2.0])
    param.set_images_(torch.ones(3, 1, 2, 2) * 1.5)  # length 3 each
    param.project_()
    torch.testing.assert_close(param().flatten(1).norm(dim=1), torch.tensor([0.5, 1.0, 2.0]))


def test_freeze_done_stops_rows_and_ends_early():
    from inputopt.networks import build_network
    from inputopt.zoo import load_digits_split

    images = load_digits_split("test")[0][:6]
    path = LossPath(build_network("digits"), NegativeCrossEntropy())
    param = PixelImage(clamp=(0, 1)).initialize_from(images)
    done, seen = [], []

    def callback(record, step, terms):
        done.append(terms["done"].clone())
        seen.append(param().detach().clone())

    optimize(param, path, steps=100, optimizer=partial(SignGradient, lr=0.02), freeze_done=True,
             callbacks=[Watch(callback)])
    done, seen = torch.stack(done), torch.stack(seen)
    assert len(done) < 100  # the loop stopped once every row was done
    for row in range(images.shape[0]):
        first = int(done[:, row].int().argmax()) if done[:, row].any() else None
        if first is not None:  # once done, a row sits still
            assert done[first:, row].all()
            torch.testing.assert_close(seen[first:, row], seen[first, row].expand_as(seen[first:, row]))
    assert path.objective.is_done(path.activations(param().detach()), path.default_targets(images)).all()
