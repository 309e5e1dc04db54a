"""The shared-input runner: one input trained by Trainer.fit over a data set (universal perturbation, patch)."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from inputopt import InputOptimization
from inputopt.data import Digits
from inputopt.functional import fooling_rate
from inputopt.objectives import Margin, NegativeCrossEntropy, UnitActivation
from inputopt.optim import SignGradient
from inputopt.params import PixelImage
from inputopt.priors import TotalVariation
from inputopt.problem import Problem
from inputopt.runners.shared import SharedBatchSampler, SharedInputOptimization, SharedStream
from inputopt.transforms import Jitter
from inputopt.transforms.insert import AddPerturbation, PastePatch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train():
    return Digits("train", limit=64)


@pytest.fixture(scope="module")
def held_out():
    return Digits("test", limit=64)


def trainer(tmp_path, steps, **kwargs):
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, max_steps=steps, num_sanity_val_steps=0,
                   check_val_every_n_epoch=None, val_check_interval=steps)
    options.update(kwargs)
    return Trainer(**options)


def universal(train, held_out=None, eps=0.2, norm="Linf", objective=None, priors=None, transforms=None, **kwargs):
    lr = 0.02 if norm == "Linf" else 0.5
    optimizer = partial(SignGradient, lr=lr) if norm == "Linf" else partial(torch.optim.SGD, lr=lr)
    problem = Problem("digits", objective or Margin(), priors, PixelImage(std=0, eps=eps, norm=norm), transforms)
    return SharedInputOptimization(problem, AddPerturbation(), train, held_out, optimizer=optimizer, batch_size=16,
                                   **kwargs)


# -- the sampler: global batches that do not depend on the processes ------------------------------------------------
def test_sampler_two_processes_take_the_global_batches_of_one():
    one = list(SharedBatchSampler(50, batch_size=8, num_replicas=1, rank=0, seed=3))
    two = [list(SharedBatchSampler(50, batch_size=4, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert len(one) == 48 and len(set(one)) == 48  # 6 whole global batches of 8, no sample twice in a pass
    for step in range(6):
        assert sorted(one[8 * step:8 * step + 8]) == sorted(two[0][4 * step:4 * step + 4] + two[1][4 * step:4 * step + 4])


def test_sampler_resumes_at_the_global_step_and_draws_a_new_order_each_pass():
    full = list(SharedBatchSampler(20, batch_size=5, seed=0))
    assert list(SharedBatchSampler(20, batch_size=5, seed=0, position=lambda: 2)) == full[10:]
    next_pass = list(SharedBatchSampler(20, batch_size=5, seed=0, position=lambda: 4))
    assert sorted(next_pass) == sorted(full) and next_pass != full


def test_exception_sampler_batch_larger_than_data():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        SharedBatchSampler(10, batch_size=8, num_replicas=2, rank=0)


class Stream(IterableDataset):
    """A map-style data set's samples as a stream."""

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


def test_stream_two_processes_take_the_global_batches_of_one_and_resume_at_the_global_step(train):
    def indices(**kwargs):
        return [int(sample[0]) for sample in SharedStream(Stream(train), **kwargs)]

    one = indices(batch_size=10)
    two = [indices(batch_size=5, num_replicas=2, rank=r) for r in (0, 1)]
    assert one == list(range(60))  # 6 whole global batches of 10, in the stream's order; 4 samples wait
    for step in range(6):
        assert one[10 * step:10 * step + 10] == two[0][5 * step:5 * step + 5] + two[1][5 * step:5 * step + 5]
    assert indices(batch_size=10, position=lambda: 8) == one[20:]  # step 8: step 2 of the second pass
    with pytest.raises(ValueError, match="fewer than one global batch"):
        indices(batch_size=40, num_replicas=2)


def test_a_streamed_data_set_trains_and_resumes_mid_pass(tmp_path, train, held_out):
    def module():
        return universal(Stream(train), Stream(held_out))

    whole = module()
    trainer(tmp_path / "a", 6).fit(whole)
    assert whole.history[-1][0] == 6 and whole.shared().abs().max() > 0
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path / "b", 3, limit_val_batches=0, callbacks=[checkpoint], enable_checkpointing=True).fit(module())
    resumed = module()  # 4 global batches of 16 a pass: step 3 is mid-pass
    trainer(tmp_path / "c", 6, limit_val_batches=0).fit(resumed, ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=3.ckpt"))
    torch.testing.assert_close(resumed.shared(), whole.shared())


# -- universal perturbations --------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm, eps", [("Linf", 0.2), ("L2", 2.0)])
def test_universal_perturbation_stays_in_budget_and_fools_held_out(tmp_path, train, held_out, norm, eps):
    module = universal(train, held_out, eps=eps, norm=norm)
    fit = trainer(tmp_path, 12)
    fit.validate(module, verbose=False)
    assert module.history == [(0, 0.0)] and module.shared().abs().max() == 0  # a zero start fools nobody
    fit.fit(module)
    delta = module.shared()
    size = delta.abs().max() if norm == "Linf" else delta.flatten().norm()
    assert 0.5 * eps < size <= eps * (1 + 1e-5)
    (_, _), (step, rate) = module.history
    assert step == 12 and rate > 0.2
    # the metric is the functional fooling rate of the held-out predictions
    images = torch.stack([held_out[i][0] for i in range(len(held_out))])
    out = module.evaluate(images, list(range(len(held_out))))
    assert rate == pytest.approx(fooling_rate(out["adversarial"], out["clean"]).item())
    assert torch.equal(out["images"], (images + delta).clamp(0, 1))


def test_targeted_universal_perturbation_reaches_its_class(tmp_path, train, held_out):
    module = universal(train, held_out, objective=NegativeCrossEntropy(target=3))
    assert module.targeted
    trainer(tmp_path, 15).fit(module)
    images = torch.stack([held_out[i][0] for i in range(len(held_out))])
    out = module.evaluate(images, list(range(len(held_out))))
    assert (out["targets"] == 3).all()
    mask = out["clean"] != 3
    assert module.history[-1][1] == pytest.approx(fooling_rate(out["adversarial"], out["targets"], True, mask).item())
    assert module.history[-1][1] > 0.3


def test_a_target_class_costs_one_forward_per_step_and_scores_the_target(tmp_path, train):
    # the objective holds its class: a step runs the network on the images with the input only (no clean forward)
    module = universal(train, objective=NegativeCrossEntropy(target=3))
    calls = []
    module.network.register_forward_hook(lambda *_: calls.append(1))
    trainer(tmp_path, 3).fit(module)
    assert len(calls) == 3
    images, _ = next(iter(DataLoader(train, batch_size=16)))
    x = module.insert(module.param(), images, images.new_empty(16, 0))
    logits = module.path.activations(x, [""])[""]
    expected = -torch.nn.functional.cross_entropy(logits, torch.full((16,), 3), reduction="none")
    terms = module.compute_loss(images, None, list(range(16)), 3)
    torch.testing.assert_close(terms["objective"], expected)


def test_priors_score_the_shared_input_and_transforms_the_loss_forward(tmp_path, train):
    module = universal(train, priors=[TotalVariation(weight=0.5)], transforms=[Jitter(1)])
    images = torch.stack([train[i][0] for i in range(4)])
    terms = module.compute_loss(images, None, [0, 1, 2, 3], step=0)
    assert terms["objective"].shape == (4,) and terms["TotalVariation"].shape == (1,)
    torch.testing.assert_close(terms["loss"], -terms["objective"] + 0.5 * terms["TotalVariation"])
    other = module.compute_loss(images, None, [0, 1, 2, 3], step=1)["objective"]  # another jitter at another step
    assert not torch.equal(other, terms["objective"])


def test_a_non_finite_step_stops_with_the_last_finite_input(tmp_path, train):
    """The step engine's update serves this runner too: a step that makes the input non-finite stops the run
    and puts the last finite input back, as in a fit (the box clamp of the data keeps the loss itself finite)."""
    from inputopt.engine import NonFiniteError

    module = SharedInputOptimization(Problem("digits", Margin(), param=PixelImage(std=0, eps=0.2)), AddPerturbation(),
                                     train, optimizer=partial(torch.optim.SGD, lr=float("nan")), batch_size=16)
    with pytest.raises(NonFiniteError, match=r"at step \d+.*(restored and kept|are kept)"):
        trainer(tmp_path, 5).fit(module)
    assert torch.isfinite(module.param()).all()


def test_reference_label_uses_the_data_labels(train):
    module = universal(train, reference="label")
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.equal(module._targets(torch.zeros(4, 1, 32, 32), labels, None), labels)


def test_a_users_dataloader_is_trained_on(tmp_path, train):
    module = universal(train)
    loader = DataLoader(TensorDataset(*train.tensors), batch_size=16)
    trainer(tmp_path, 3, limit_val_batches=0).fit(module, train_dataloaders=loader)
    assert module.global_step == 3 and module.shared().abs().max() > 0


# -- patches ---------------------------------------------------------------------------------------------------
def test_patch_is_pasted_at_seeded_places_and_learns(tmp_path, train, held_out):
    module = SharedInputOptimization(Problem("digits", NegativeCrossEntropy(target=8)),
                                     PastePatch(area=0.25, shape="circle"), train, held_out, batch_size=16,
                                     optimizer=partial(SignGradient, lr=0.1))
    assert module.shared().shape == (1, 1, 18, 18)
    images = torch.zeros(3, 1, 32, 32)
    first = module.evaluate(images, [0, 1, 2])["images"]
    assert torch.equal(first, module.evaluate(images, [0, 1, 2])["images"])  # the same places at every validation
    assert torch.equal(first[1], module.evaluate(images[:1], [1])["images"][0])  # sample 1's place, in any batch
    covered = (first != 0).float().flatten(1).mean(1)
    assert ((covered > 0.2) & (covered < 0.3)).all()
    fit = trainer(tmp_path, 10)
    fit.validate(module, verbose=False)
    fit.fit(module)
    (_, before), (_, after) = module.history
    assert before < 0.1 and after > 0.4  # targeted success on held-out digits
    assert 0 <= module.shared().min() and module.shared().max() <= 1  # the patch stays in the box


# -- checkpoints and resume ---------------------------------------------------------------------------------------
def test_resume_mid_pass_gives_the_uninterrupted_input(tmp_path, train):
    def module():
        return SharedInputOptimization(Problem("digits", Margin(), param=PixelImage(std=0, eps=0.2)), AddPerturbation(),
                                       train, batch_size=16, optimizer=partial(torch.optim.Adam, lr=0.01))

    whole = module()
    trainer(tmp_path / "a", 7, limit_val_batches=0).fit(whole)
    first = module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path / "b", 3, limit_val_batches=0, callbacks=[checkpoint], enable_checkpointing=True).fit(first)
    resumed = module()  # 4 batches a pass: step 3 is mid-pass, step 4 starts another order
    trainer(tmp_path / "c", 7, limit_val_batches=0).fit(resumed, ckpt_path=str(tmp_path / "ckpt" / "epoch=0-step=3.ckpt"))
    assert resumed.global_step == 7
    torch.testing.assert_close(resumed.shared(), whole.shared())
    assert not torch.equal(first.shared(), whole.shared())


def test_load_from_checkpoint_rebuilds_the_problem(tmp_path, train):
    """The checkpoint's hyperparameters hold the problem as plain data: a named network's problem is rebuilt from
    them; one on a module is given again (a clear error otherwise)."""
    from inputopt.networks import build_network

    def fitted(problem, folder):
        module = SharedInputOptimization(problem, AddPerturbation(), train, batch_size=16)
        checkpoint = ModelCheckpoint(dirpath=folder, every_n_train_steps=2)
        trainer(folder, 2, limit_val_batches=0, callbacks=[checkpoint], enable_checkpointing=True).fit(module)
        return module, next(folder.glob("*.ckpt"))

    module, path = fitted(Problem("digits", Margin(), [TotalVariation(0.1)], PixelImage(std=0, eps=0.2), seed=3),
                          tmp_path / "named")
    assert torch.load(path, weights_only=True)["hyper_parameters"]["problem"] == module.problem.config()
    restored = SharedInputOptimization.load_from_checkpoint(path, dataset=train)
    assert restored.problem.config() == module.problem.config() and restored.seed == 3
    torch.testing.assert_close(restored.shared(), module.shared())
    net = build_network("digits")
    module, path = fitted(Problem(net, Margin(), param=PixelImage(std=0, eps=0.2)), tmp_path / "module")
    with pytest.raises(ValueError, match=r"was a module .*load_from_checkpoint\(path, problem=Problem\(module"):
        SharedInputOptimization.load_from_checkpoint(path, dataset=train)
    again = SharedInputOptimization.load_from_checkpoint(
        path, dataset=train, problem=Problem(net, Margin(), param=PixelImage(std=0, eps=0.2)))
    torch.testing.assert_close(again.shared(), module.shared())


def test_exception_resume_with_another_budget(tmp_path, train):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=2)
    trainer(tmp_path, 2, limit_val_batches=0, callbacks=[checkpoint], enable_checkpointing=True).fit(universal(train))
    path = next(tmp_path.glob("*.ckpt"))
    with pytest.raises(ValueError, match="refusing to resume.*param"):
        trainer(tmp_path, 4, limit_val_batches=0).fit(universal(train, eps=0.1), ckpt_path=str(path))


def test_bf16_mixed_precision_keeps_the_input_float32(tmp_path, train):
    module = universal(train)
    trainer(tmp_path, 2, limit_val_batches=0, precision="bf16-mixed").fit(module)
    assert module.param.pixels.dtype == torch.float32 and module.shared().abs().max() > 0


# -- bad input ---------------------------------------------------------------------------------------------------
def test_exception_universal_perturbation_without_budget(train):
    with pytest.raises(ValueError, match="needs a budget"):
        SharedInputOptimization(Problem("digits", Margin()), AddPerturbation(), train)
    with pytest.raises(ValueError, match="needs a budget"):
        SharedInputOptimization(Problem("digits", Margin(), param=PixelImage()), AddPerturbation(), train)


def test_exception_bad_arguments(tmp_path, train):
    with pytest.raises(ValueError, match="reference must be"):
        universal(train, reference="labels")
    with pytest.raises(ValueError, match="out of range"):
        universal(train, objective=Margin(target=12))
    with pytest.raises(ValueError, match="does not fit"):
        SharedInputOptimization(Problem("digits", Margin()), PastePatch(area=0.99, shape="circle"), train)
    with pytest.raises(ValueError, match=r"a shared-input run needs an objective in its problem \(e.g. Margin\(\)\)"):
        SharedInputOptimization(Problem("digits"), AddPerturbation(), train)
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        trainer(tmp_path, 2, accumulate_grad_batches=2).fit(universal(train))
    with pytest.raises(ValueError, match="precision"):
        trainer(tmp_path, 2, precision="bf16-true").fit(universal(train))


# -- InputOptimization refuses data --------------------------------------------------------------------------------
def test_exception_input_optimization_refuses_a_dataloader(tmp_path, train):
    module = InputOptimization(Problem("digits", UnitActivation(None, unit=3)), image_shape=(1, 32, 32))
    before = module.images()
    loader = DataLoader(TensorDataset(*train.tensors), batch_size=16)
    with pytest.raises(ValueError, match="takes no data.*SharedInputOptimization"):
        trainer(tmp_path, 2).fit(module, train_dataloaders=loader)
    assert torch.equal(module.images(), before)  # refused before any step
    trainer(tmp_path, 2).fit(module)  # without data: fine
    assert not torch.equal(module.images(), before)


# -- several processes ---------------------------------------------------------------------------------------------
UNIVERSAL = {
    "model": {"problem": {"network": "digits", "objective": {"class_path": "Margin"}},
              "insert": {"class_path": "PastePatch", "init_args": {"area": 0.1, "degrees": 15, "scale": [0.8, 1.2]}},
              "dataset": {"class_path": "inputopt.data.Digits", "init_args": {"split": "train", "limit": 96}},
              "val_dataset": {"class_path": "inputopt.data.Digits", "init_args": {"split": "test", "limit": 40}},
              "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}}},
    "trainer": {"accelerator": "cpu", "max_steps": 5, "val_check_interval": 5, "logger": False,
                "enable_progress_bar": False, "enable_model_summary": False}}


def _one_process(batch: int) -> SharedInputOptimization:
    module = SharedInputOptimization(Problem("digits", Margin()), PastePatch(area=0.1, degrees=15, scale=(0.8, 1.2)),
                                     Digits("train", limit=96), Digits("test", limit=40), batch_size=batch,
                                     optimizer=partial(torch.optim.Adam, lr=0.05))
    Trainer(accelerator="cpu", devices=1, max_steps=5, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None, val_check_interval=5,
            num_sanity_val_steps=0).fit(module)
    return module


@pytest.mark.slow
def test_two_gloo_processes_give_the_input_of_one_process_with_the_same_global_batch(tmp_path):
    """``inputopt universal --trainer.devices 2 --trainer.strategy ddp`` from the command line, 2 CPU processes
    (DDP, gloo) with 16 samples each, equals 1 process with 32: the same samples at every step (the shared
    sampler), the same patch placements (seeded by sample), the gradient averaged by DDP, and the held-out
    fooling rate synced by the metric. Across 3 passes of the data (96 samples, 32 a step). The run lock is
    taken once (rank 1 does not find its folder held by rank 0)."""
    import yaml

    (tmp_path / "universal.yaml").write_text(yaml.safe_dump(UNIVERSAL))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).with_name("inputopt")), "universal", "--config", "universal.yaml",
               "--model.batch_size", "16", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.callbacks", '[{"class_path": "SaveSharedInput", "init_args": {"dirpath": "two"}}]']
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run.lock" not in done.stderr
    one = _one_process(32)
    torch.testing.assert_close(torch.load(tmp_path / "two" / "shared.pt"), one.shared(), rtol=1e-5, atol=1e-6)
    rows = (tmp_path / "two" / "history.csv").read_text().split()
    assert rows[0] == "step,fooling_rate" and [r.split(",")[0] for r in rows[1:]] == ["0", "5"]  # before, after
    assert one.history[0][0] == 5 and float(rows[2].split(",")[1]) == pytest.approx(one.history[0][1])
    assert not torch.allclose(_one_process(16).shared(), one.shared())  # it is the batch
