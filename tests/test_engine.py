"""The step engine: one step for every run, so a fit, a sweep and an attack fail the same way."""

from __future__ import annotations

import re
from functools import partial

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt.attacks import GradientAscent
from inputopt.callbacks.sweep import SaveSweep
from inputopt.engine import NonFiniteError, StepEngine, optimize
from inputopt.loss import LossPath
from inputopt.module import InputOptimization
from inputopt.networks import build_network
from inputopt.objectives import UnitActivation
from inputopt.optim import NormalizedGradient, SignGradient
from inputopt.params import PixelImage
from inputopt.problem import Problem
from inputopt.runners.sweep import FeatureSweep
from inputopt.zoo import load_digits_split
from tests.conftest import Watch

#: SGD with a learning rate no image survives: the images overflow within a few steps.
BAD = partial(torch.optim.SGD, lr=1e38)
UNITS = [3, 8]


def quiet(**kwargs) -> Trainer:
    return Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   **kwargs)


def test_the_same_bad_learning_rate_stops_a_fit_a_sweep_and_an_attack_alike(tmp_path):
    fit = InputOptimization(Problem("digits", UnitActivation(None, unit=UNITS)), image_shape=(1, 32, 32), optimizer=BAD)
    with pytest.raises(NonFiniteError) as from_fit:
        quiet(max_steps=10).fit(fit)
    assert torch.isfinite(fit.images()).all()  # the last finite images are kept

    sweep = FeatureSweep(Problem("digits", UnitActivation(None, unit=UNITS)), image_shape=(1, 32, 32), optimizer=BAD,
                         steps=10)
    with pytest.raises(NonFiniteError) as from_sweep:
        quiet(callbacks=[SaveSweep(tmp_path, progress=False)]).test(sweep, verbose=False)
    # the same rows from the same seeds: the same error, word for word
    assert str(from_sweep.value) == str(from_fit.value)
    assert re.fullmatch(r"non-finite loss \(NaN or Inf\) at step \d+: .*; the \(finite\) images of step \d+ are kept|"
                        r"the images went non-finite \(NaN or Inf\) at step \d+ in rows .*; the images of step \d+ "
                        r"are restored and kept", str(from_fit.value))
    # nothing non-finite on disk: no input.pt of a failed sweep, and no unit file holding inf
    assert not (tmp_path / "input.pt").exists()
    for path in (tmp_path / "units").glob("*.pt") if (tmp_path / "units").is_dir() else []:
        assert torch.isfinite(torch.load(path, weights_only=True)).all()

    images = load_digits_split("test")[0][:2]
    with pytest.raises(NonFiniteError, match=r"at step \d+.*(are kept|restored and kept)"):
        GradientAscent("digits", lr=1e38, steps=10).run(images)


def test_optimize_keeps_the_last_finite_images():
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    path = LossPath(build_network("digits"), UnitActivation(None, unit=UNITS))
    seen = []
    with pytest.raises(NonFiniteError):
        optimize(param, path, 10, BAD, callbacks=[Watch(lambda record, step, terms: seen.append(param().detach().clone()))])
    assert torch.isfinite(param()).all()
    assert torch.equal(param().detach(), seen[-1]) or torch.isfinite(seen[-1]).all()


def test_engine_step_is_the_fit_step():
    """Five steps of the plain loop give the images of five steps of a fit, bit for bit."""
    objective = UnitActivation(None, unit=UNITS)
    module = InputOptimization(Problem("digits", objective), image_shape=(1, 32, 32))
    start = module.images()
    quiet(max_steps=5).fit(module)
    param = PixelImage().initialize((1, 32, 32), keys=UNITS)
    assert torch.equal(param().detach(), start)
    optimize(param, LossPath(build_network("digits"), UnitActivation(None, unit=UNITS)), 5)
    assert torch.equal(param().detach(), module.images())


def test_freeze_done_rows_keep_their_images_under_momentum():
    """A done row is put back after the optimizer step even when momentum would move it."""
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    path = LossPath(build_network("digits"), UnitActivation(None, unit=UNITS))
    engine = StepEngine(param, path, freeze_done=True)
    optimizer = torch.optim.SGD(param.parameters(), lr=0.1, momentum=0.9)
    engine.step(optimizer, 0)
    engine.done[0] = True
    before = param().detach().clone()
    engine.step(optimizer, 1)
    after = param().detach()
    assert torch.equal(after[0], before[0]) and not torch.equal(after[1], before[1])


@pytest.mark.parametrize("rule", [SignGradient, NormalizedGradient])
def test_row_optimizers_take_a_step_size_per_row(rule):
    x = torch.nn.Parameter(torch.zeros(3, 2, 2))
    grad = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(0))
    lr = torch.tensor([0.0, 0.5, 2.0])
    x.grad = grad.clone()
    rule([x], lr=lr).step()
    for i in range(3):  # each row as a one-row optimizer with its own number
        y = torch.nn.Parameter(torch.zeros(1, 2, 2))
        y.grad = grad[i:i + 1].clone()
        rule([y], lr=float(lr[i])).step()
        torch.testing.assert_close(x.data[i], y.data[0])
    with pytest.raises(ValueError, match="one per row"):
        rule([x], lr=torch.tensor([[0.1]]))
    with pytest.raises(ValueError, match="does not fit"):
        rule([x], lr=torch.tensor([0.1, 0.2])).step()


def test_a_callback_may_change_the_gradient_rows_before_the_step():
    """The callback runs after the backward and before the optimizer step: zeroing row 0's gradient there
    keeps row 0 where it was (what attacks with their own step rule rely on)."""
    param = PixelImage(mean=0.5).initialize((1, 32, 32), keys=UNITS)
    start = param().detach().clone()
    path = LossPath(build_network("digits"), UnitActivation(None, unit=UNITS))
    steps = []

    def callback(record, step, terms):
        steps.append(step)
        assert param.tensor.grad is not None and not terms["loss"].requires_grad
        param.tensor.grad[0] = 0

    optimize(param, path, 3, partial(torch.optim.SGD, lr=0.1), callbacks=[Watch(callback)])
    assert steps == [0, 1, 2]
    assert torch.equal(param()[0].detach(), start[0]) and not torch.equal(param()[1].detach(), start[1])


def _apgd_run(monkeypatch=None) -> tuple[torch.Tensor, list[int]]:
    """APGD-CE (the engine with ``freeze_done``) on 16 digits; the adversarial images and the batch size of
    every network forward."""
    from inputopt.attacks import APGD
    from inputopt.zoo import digits_cnn
    images, labels = (t[:16] for t in load_digits_split("test"))
    net = digits_cnn("a").eval()
    sizes: list[int] = []
    net.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    return APGD(net, eps=0.1, steps=10)(images, labels), sizes


def test_freeze_done_forwards_only_the_active_rows_with_the_same_result(monkeypatch):
    """Under ``freeze_done`` the plain loop scores only the rows not yet done, and gives the images that scoring
    every row (the done ones with a zero loss) gives."""
    gathered, sizes = _apgd_run()
    monkeypatch.setattr(StepEngine, "active_terms", lambda self, step: self.terms(step))
    every_row, all_sizes = _apgd_run()
    assert torch.allclose(gathered, every_row, atol=1e-6)
    assert max(sizes) == 16 and min(sizes) < 16, "some digits break within 10 steps: fewer rows are forwarded"
    assert sum(sizes) < sum(all_sizes)
